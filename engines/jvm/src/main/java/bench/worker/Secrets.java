package bench.worker;

import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.remoting.RPCHook;

/**
 * Credentials of a target. The spec carries only the NAMES of environment variables
 * (endpoints.auth_token_env, acl_access_key_env, acl_secret_key_env); the values are read here,
 * from this process's environment, and never written anywhere.
 */
final class Secrets {
    private Secrets() {}

    /** The value of the variable the endpoint field names; null when the field is empty. */
    static String fromEnv(LoadSpec spec, String endpointField) {
        String name = spec.endpoint(endpointField);
        if (name.isEmpty()) return null;
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            String target = spec.endpoint("target");
            throw new LoadSpec.SpecError((target.isEmpty() ? spec.broker : "target " + target)
                    + ": environment variable " + name + " is not set (it holds the credentials)");
        }
        return value;
    }

    /** RocketMQ ACL on remoting: the client's own AclClientRPCHook signs each request. Null
     *  without ACL. */
    static RPCHook aclHook(LoadSpec spec) {
        String ak = fromEnv(spec, "acl_access_key_env");
        String sk = fromEnv(spec, "acl_secret_key_env");
        if (ak == null && sk == null) return null;
        if (ak == null || sk == null) throw new LoadSpec.SpecError("RocketMQ ACL needs both keys");
        return new AclClientRPCHook(new SessionCredentials(ak, sk));
    }
}
