package bench.worker;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.rocketmq.remoting.RPCHook;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;

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

    /** RocketMQ ACL on remoting: signs each request as AclClientRPCHook does (HmacSHA1 over the
     *  ext field values in key order, AccessKey included, then the body). Null without ACL. */
    static RPCHook aclHook(LoadSpec spec) {
        String ak = fromEnv(spec, "acl_access_key_env");
        String sk = fromEnv(spec, "acl_secret_key_env");
        if (ak == null && sk == null) return null;
        if (ak == null || sk == null) throw new LoadSpec.SpecError("RocketMQ ACL needs both keys");
        return new AclHook(ak, sk);
    }

    record AclHook(String accessKey, String secretKey) implements RPCHook {
        @Override
        public void doBeforeRequest(String remoteAddr, RemotingCommand request) {
            request.makeCustomHeaderToNet();
            TreeMap<String, String> fields = new TreeMap<>();
            if (request.getExtFields() != null) fields.putAll(request.getExtFields());
            fields.remove("Signature");
            fields.put("AccessKey", accessKey);
            StringBuilder content = new StringBuilder();
            for (Map.Entry<String, String> e : fields.entrySet()) content.append(e.getValue());
            byte[] head = content.toString().getBytes(StandardCharsets.UTF_8);
            byte[] body = request.getBody() == null ? new byte[0] : request.getBody();
            try {
                Mac mac = Mac.getInstance("HmacSHA1");
                mac.init(new SecretKeySpec(secretKey.getBytes(StandardCharsets.UTF_8), "HmacSHA1"));
                mac.update(head);
                mac.update(body);
                request.addExtField("AccessKey", accessKey);
                request.addExtField("Signature", Base64.getEncoder().encodeToString(mac.doFinal()));
            } catch (Exception e) {
                throw new IllegalStateException("ACL signing failed: " + e.getClass().getSimpleName());
            }
        }

        @Override
        public void doAfterResponse(String remoteAddr, RemotingCommand request, RemotingCommand response) {}

        @Override
        public String toString() {
            return "AclHook[" + accessKey.length() + " chars]";  // never the keys
        }
    }
}
