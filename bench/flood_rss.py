#!/usr/bin/env python3
"""RSS of a sipbox under a bounded UDP flood: before, during and after.

Starts `sipbox run` (loopback, pike off as on loopback by default) with the given
extra config, floods it with OPTIONS (a new transaction each: unique branch and
Call-ID) at RATE/s for SECONDS from one socket while a second socket probes once
every 100 ms, then waits for the transactions to expire (Timer J, 32 s) and prints
the resident memory at each stage and the probes' answers.

    bench/flood_rss.py target/debug/sipbox [RATE] [SECONDS] [extra toml...]
    bench/flood_rss.py target/debug/sipbox 20000 10 "[server]" "max_transactions = 0"
    FLOOD_ROUNDS=2 bench/flood_rss.py ...   (flood again: is what stayed reused?)
"""
import os, re, socket, subprocess, sys, tempfile, time, json, urllib.request

binary = sys.argv[1]
rate = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10
extra = "\n".join(sys.argv[4:])
port, mi = 25060, 28888

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return kb / 1024

def stat(name):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "get_statistics", "params": [[name]]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{mi}/mi", body, {"Content-Type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req, timeout=2))["result"]
    except Exception as e:  # the MI may be busy under the flood
        return str(e)

d = tempfile.mkdtemp()
cfg = os.path.join(d, "sipbox.toml")
server = ""
if "[server]" in extra:
    server, extra = extra.split("[server]", 1)[1], ""
with open(cfg, "w") as f:
    f.write(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nlog = "warn"\n{server}\n'
            f'[location]\ndb_path = ""\n[mi]\nhttp = "127.0.0.1:{mi}"\nudp = ""\n{extra}\n')
proc = subprocess.Popen([binary, "run", "--config", cfg], stderr=subprocess.DEVNULL)
try:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    me = "%s:%d" % probe.getsockname()
    probe.settimeout(0.05)
    deadline = time.time() + 60
    while True:  # up once the first probe is answered
        probe.sendto(f"OPTIONS sip:up@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKup\r\n".encode() +
                     b"From: <sip:p@x>;tag=1\r\nTo: <sip:up@x>\r\nCall-ID: up\r\nCSeq: 1 OPTIONS\r\n"
                     b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", ("127.0.0.1", port))
        try:
            probe.recv(65536)
            break
        except socket.timeout:
            assert time.time() < deadline, "sipbox did not come up"
    time.sleep(1)
    before = rss_mb(proc.pid)
    rounds = int(os.environ.get("FLOOD_ROUNDS", "1"))
    def one_flood(probe, me):
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.setblocking(False)
        sent, probes, answers, peak = 0, 0, {}, before
        start = time.time()
        next_probe = start
        while (now := time.time()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                msg = (f"OPTIONS sip:flood@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKf{sent}\r\n"
                       f"From: <sip:f@x>;tag=1\r\nTo: <sip:flood@x>\r\nCall-ID: f{sent}\r\nCSeq: 1 OPTIONS\r\n"
                       f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
                try:
                    flood.sendto(msg, ("127.0.0.1", port))
                except BlockingIOError:
                    pass
                sent += 1
            if now >= next_probe:
                next_probe += 0.1
                probes += 1
                probe.sendto((f"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKp{probes}\r\nFrom: <sip:p@x>;tag=1\r\n"
                              f"To: <sip:probe@x>\r\nCall-ID: p{probes}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                              f"Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
                peak = max(peak, rss_mb(proc.pid))
            try:
                while True:
                    code = probe.recv(65536).split(b" ", 2)[1].decode()
                    answers[code] = answers.get(code, 0) + 1
            except (socket.timeout, BlockingIOError):
                pass
            probe.settimeout(0)
            time.sleep(0.0005)
        probe.settimeout(2)
        try:
            while True:
                code = probe.recv(65536).split(b" ", 2)[1].decode()
                answers[code] = answers.get(code, 0) + 1
                probe.settimeout(0.5)
        except (socket.timeout, BlockingIOError):
            pass
        during = rss_mb(proc.pid)
        tm_during = stat("tm:")
        time.sleep(40)  # Timer J (64*T1 = 32 s) ends every flood transaction
        after = rss_mb(proc.pid)
        print(f"sent {sent} in {seconds}s ({sent/seconds:.0f}/s); probes {probes}, answers {answers}")
        print(f"RSS MB: before {before:.0f}, peak during {max(peak, during):.0f}, end of flood {during:.0f}, "
              f"40 s after {after:.0f}")
        print(f"tm at end of flood: {tm_during}")
        print(f"tm 40 s after: {stat('tm:')}")
    for r in range(rounds):
        print(f"round {r + 1}:")
        one_flood(probe, me)
finally:
    proc.terminate()
    proc.wait(10)
