"""Paced pulsar-perf (producer + consumer) against a fresh Pulsar standalone: CPU shares as a
step's client_bound rule reads them. Usage: native_paced.py RATE [RATE...]"""
import json, os, subprocess, sys, time
from pathlib import Path
from bench.infra.artifacts import ensure_classpath
from bench.infra.java import find_java
from bench.infra.paths import project_infra_dir

# Run with the project's venv: .venv/bin/python docs/measure/native_paced.py 5000 12000
B = str(Path(sys.executable).with_name("bench"))
D = "/tmp/bench-native-paced/infra"
work = Path("/tmp/bench-native-paced/work"); work.mkdir(parents=True, exist_ok=True)
TCK = os.sysconf("SC_CLK_TCK")

def pids_in(o, out):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "pid" and isinstance(v, int): out.append(v)
            else: pids_in(v, out)
    elif isinstance(o, list):
        for v in o: pids_in(v, out)
    return out

def ticks(pid):
    try:
        st = open(f"/proc/{pid}/stat").read()
        f = st[st.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])
    except OSError:
        return 0

def host():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f), idle

subprocess.run([B, "infra", "--dir", D, "up", "pulsar", "--fresh", "--port-offset", "3000"], check=True)
try:
    state = json.load(open(f"{D}/state.json"))
    broker_pids = pids_in(state, [])
    eps = json.dumps(state)
    svc = "pulsar://127.0.0.1:9650"; adm = "http://127.0.0.1:11080"
    for s in (state.get("brokers") or {}).values() if isinstance(state.get("brokers"), dict) else []:
        pass
    # the endpoints as the state records them
    def find(o, key):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == key: return v
                r = find(v, key)
                if r is not None: return r
        elif isinstance(o, list):
            for v in o:
                r = find(v, key)
                if r is not None: return r
    svc = find(state, "service_url") or svc
    admu = find(state, "admin_urls")
    adm = admu[0] if admu else adm
    print("broker pids", broker_pids, svc, adm, flush=True)
    java = find_java().executable
    cp = ensure_classpath("pulsar").joined()
    conf = work / "client.conf"
    conf.write_text(f"webServiceUrl={adm}/\nbrokerServiceUrl={svc}/\n")
    log4j = project_infra_dir() / "conf" / "pulsar" / "log4j2.xml"
    base = [java, "-Xmx512m", f"-Dlog4j.configurationFile={log4j}", "-cp", cp,
            "org.apache.pulsar.testclient.PulsarPerfTestTool", str(conf)]
    for rate in [int(r) for r in sys.argv[1:]]:
        topic = f"persistent://public/default/paced-{rate}"
        dur = 45
        cons = subprocess.Popen(base + ["consume", "--service-url", svc, "-t", "8", "-s", "s1",
                                        "--test-duration", str(dur + 15), topic],
                                stdout=open(work / f"cons-{rate}.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(8)
        prod = subprocess.Popen(base + ["produce", "--service-url", svc, "--admin-url", adm,
                                        "-t", "8", "-n", "1", "--rate", str(rate), "--size", "1024",
                                        "--disable-batching", "--max-outstanding", "2000",
                                        "--test-duration", str(dur), topic],
                                stdout=open(work / f"prod-{rate}.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(15)
        p0 = {p: ticks(p) for p in broker_pids + [prod.pid, cons.pid]}
        h0 = host(); t0 = time.monotonic()
        time.sleep(20)
        p1 = {p: ticks(p) for p in p0}
        h1 = host(); el = time.monotonic() - t0
        pct = {p: (p1[p] - p0[p]) / TCK / el * 100 for p in p0}
        broker = sum(pct[p] for p in broker_pids)
        client = pct[prod.pid] + pct[cons.pid]
        tot, idle = h1[0] - h0[0], h1[1] - h0[1]
        hostpct = 100 * (tot - idle) / tot
        share = client / (client + broker)
        print(json.dumps({"rate": rate, "window_s": round(el, 1), "host_cpu_pct": round(hostpct, 1),
                          "producer_cpu_pct": round(pct[prod.pid], 1), "consumer_cpu_pct": round(pct[cons.pid], 1),
                          "client_cpu_pct": round(client, 1), "broker_cpu_pct": round(broker, 1),
                          "client_share": round(share, 3),
                          "client_bound_rule": hostpct >= 90 and share >= 1 / 3}), flush=True)
        prod.wait(timeout=120); cons.wait(timeout=120)
finally:
    subprocess.run([B, "infra", "--dir", D, "down"], check=False)
