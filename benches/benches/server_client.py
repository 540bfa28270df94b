"""The client side of benches/benches/server.rs: psycopg 3 against `stratalake serve`.

Usage: server_client.py CONNINFO RUNS CLIENTS SECONDS QUERY...

Prints one JSON object: for each QUERY the median seconds of RUNS runs of execute + fetchall
(text results, psycopg's default) and of the same in binary; the median seconds of a connect
(TLS off, SCRAM login); and the statements per second CLIENTS threads, each on its own
connection, complete in SECONDS running the first query.
"""

import json
import statistics
import sys
import threading
import time

import psycopg

conninfo, runs, clients, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
queries = sys.argv[5:]
out = {"queries": {}}

with psycopg.connect(conninfo, autocommit=True) as conn:
    for q in queries:
        text, binary, rows = [], [], 0
        for _ in range(runs):
            t = time.perf_counter()
            rows = len(conn.execute(q).fetchall())
            text.append(time.perf_counter() - t)
            t = time.perf_counter()
            with conn.cursor(binary=True) as cur:
                cur.execute(q)
                cur.fetchall()
            binary.append(time.perf_counter() - t)
        out["queries"][q] = {"rows": rows, "text": statistics.median(text), "binary": statistics.median(binary)}

connects = []
for _ in range(runs * 2):
    t = time.perf_counter()
    psycopg.connect(conninfo).close()
    connects.append(time.perf_counter() - t)
out["connect"] = statistics.median(connects)

done = [0] * clients
stop_at = time.perf_counter() + seconds


def client(i):
    with psycopg.connect(conninfo, autocommit=True) as c:
        while time.perf_counter() < stop_at:
            c.execute(queries[0]).fetchall()
            done[i] += 1


threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
start = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
out["qps"] = sum(done) / (time.perf_counter() - start)
print(json.dumps(out))
