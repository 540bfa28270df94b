"""Sixteen clients query while a writer ingests (server.rs, sixteen_clients_...).

Usage: load_client.py WRITER_CONNINFO READER_CONNINFO ANALYST_CONNINFO SEED BATCHES BATCH ROUNDS

The writer (autocommit) appends BATCHES batches of BATCH orders, ids continuing from SEED, each
batch one INSERT and so one commit. Fifteen readers as the administrator and one analyst under
a row filter (region = 'north') each run ROUNDS rounds of TPC-H-style queries at the same time
and check what one statement must see: whole commits only (ids 1..n without a gap, quantities
summing to n), the same table version in every reference of a statement, group totals adding up,
a join against the regions table losing no order, and the analyst's rows all in the north.
Prints "ok" and the counts, or the first failure.
"""

import sys
import threading
import time

import psycopg

writer_info, reader_info, analyst_info = sys.argv[1:4]
seed, batches, batch, rounds = (int(a) for a in sys.argv[4:8])
REGIONS = ["north", "south", "east", "west"]
failures = []
done = {"queries": 0}
lock = threading.Lock()


def fail(who, what):
    with lock:
        failures.append(f"{who}: {what}")


def writer():
    try:
        with psycopg.connect(writer_info, autocommit=True) as conn:
            for b in range(batches):
                first = seed + b * batch + 1
                rows = ", ".join(
                    f"({i}, '{REGIONS[i % 4]}', 1, {i % 97}.25)" for i in range(first, first + batch)
                )
                conn.execute(f"INSERT INTO orders VALUES {rows}")
    except Exception as e:  # noqa: BLE001 - every failure is reported
        fail("writer", repr(e))


def reader(n, info, analyst):
    who = f"{'analyst' if analyst else 'reader'} {n}"
    try:
        with psycopg.connect(info, autocommit=True) as conn:
            for _ in range(rounds):
                count, qty, distinct, top = conn.execute(
                    "SELECT count(*), sum(qty), count(DISTINCT id), max(id) FROM orders"
                ).fetchone()
                if analyst:
                    outside = conn.execute(
                        "SELECT count(*) FROM orders WHERE region <> 'north'"
                    ).fetchone()[0]
                    if outside:
                        fail(who, f"{outside} rows outside the analyst's row filter")
                    if count * 4 > top + 4 or count * 4 < top - 4:
                        fail(who, f"{count} north rows of ids up to {top}")
                else:
                    if not (count == qty == distinct == top) or count < seed:
                        fail(who, f"a torn read: count {count}, sum {qty}, distinct {distinct}, max {top}")
                    groups = conn.execute(
                        "SELECT region, count(*) AS n, sum(price) AS revenue, avg(qty) AS q FROM orders "
                        "GROUP BY region ORDER BY revenue DESC"
                    ).fetchall()
                    if len(groups) != 4 or any(q != 1 for _, _, _, q in groups):
                        fail(who, f"groups {groups}")
                    same, joined = conn.execute(
                        "SELECT (SELECT count(*) FROM orders) = (SELECT sum(n) FROM "
                        "(SELECT region, count(*) AS n FROM orders GROUP BY region) g), "
                        "(SELECT count(*) FROM orders o JOIN regions r ON o.region = r.region) "
                        "= (SELECT count(*) FROM orders)"
                    ).fetchone()
                    if not same or not joined:
                        fail(who, f"one statement saw two versions (groups {same}, join {joined})")
                    top_orders = conn.execute(
                        "SELECT o.id, r.name, o.price FROM orders o JOIN regions r ON o.region = r.region "
                        "WHERE o.price > %s ORDER BY o.price DESC, o.id LIMIT 10",
                        (90,),
                    ).fetchall()
                    if len(top_orders) != 10 or any(p <= 90 for _, _, p in top_orders):
                        fail(who, f"top orders {top_orders}")
                with lock:
                    done["queries"] += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported
        fail(who, repr(e))


threads = [threading.Thread(target=writer)]
threads += [threading.Thread(target=reader, args=(n, reader_info, False)) for n in range(15)]
threads.append(threading.Thread(target=reader, args=(15, analyst_info, True)))
start = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=600)
if any(t.is_alive() for t in threads):
    fail("test", "a client did not finish within 10 minutes")
if failures:
    print("\n".join(failures[:20]))
    sys.exit(1)
with psycopg.connect(writer_info, autocommit=True) as conn:
    final = conn.execute("SELECT count(*), max(id) FROM orders").fetchone()
if final != (seed + batches * batch, seed + batches * batch):
    print(f"after the writer: {final}, expected {seed + batches * batch} rows")
    sys.exit(1)
print(f"ok {done['queries']} rounds, {final[0]} rows, {time.monotonic() - start:.1f}s")
