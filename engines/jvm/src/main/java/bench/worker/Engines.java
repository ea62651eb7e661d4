package bench.worker;

/** Picks the engine for a spec's broker and path. */
final class Engines {
    private Engines() {}

    static Engine open(LoadSpec spec) throws Exception {
        if (spec.broker.equals("pulsar")) return new PulsarEngine(spec);
        if (spec.path.equals("proxy")) return new RocketMqProxyEngine(spec);
        return new RocketMqRemotingEngine(spec);
    }
}
