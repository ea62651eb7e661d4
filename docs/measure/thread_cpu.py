"""Per-thread CPU of the next JVM worker (bench.worker.Main) to start, grouped by thread name.

Usage: thread_cpu.py DELAY_S WINDOW_S [SKIP]: waits for a worker (skipping the first SKIP, e.g. 1
for the broker warm-up's), sleeps DELAY_S, then sums /proc/PID/task/*/stat ticks over WINDOW_S.
Start it just before `bench run`."""
import os,sys,time,collections,re
def find():
    for p in os.listdir('/proc'):
        if p.isdigit():
            try: c=open(f'/proc/{p}/cmdline','rb').read().split(b'\0')
            except OSError: continue
            if b'bench.worker.Main' in c: return p
def snap(pid):
    d={}
    for t in os.listdir(f'/proc/{pid}/task'):
        try: st=open(f'/proc/{pid}/task/{t}/stat').read()
        except OSError: continue
        name=st[st.index('(')+1:st.rindex(')')]
        f=st[st.rindex(')')+2:].split()
        d[t]=(name,int(f[11])+int(f[12]))
    return d
pid=None
skip=int(sys.argv[3]) if len(sys.argv)>3 else 0
seen=[]
for _ in range(3000):
    p=find()
    if p and p not in seen:
        seen.append(p)
        if len(seen)>skip: pid=p; break
    time.sleep(0.1)
time.sleep(float(sys.argv[1]))
a=snap(pid); time.sleep(float(sys.argv[2])); b=snap(pid)
agg=collections.Counter()
for t,(n,v) in b.items():
    agg[re.sub(r'\d+','#',n)]+=v-a.get(t,(n,0))[1]
tot=sum(agg.values())
print('pid',pid,'total ticks',tot, 'cpu%', tot/float(sys.argv[2]))
for n,v in agg.most_common(25): print(f'{v:6d} {n}')
