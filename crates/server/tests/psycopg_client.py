"""psycopg 3 against `stratalake serve` (run by tests/server.rs with the venv scripts/test.sh makes).

argv: conninfo of admin, of ana (row filter: north only), of bob (no grant). Table `measures`
exists, empty; `permits` holds four rows. Exits non-zero with the failed check's message.
"""

import datetime
import sys
from decimal import Decimal

import psycopg
from psycopg import errors

admin, ana, bob = sys.argv[1:4]


def check(cond, what):
    if not cond:
        sys.exit(f"check failed: {what}")


def sqlstate_of(conninfo, sql, params=None, autocommit=True):
    with psycopg.connect(conninfo, autocommit=autocommit) as c:
        try:
            c.execute(sql, params)
        except psycopg.Error as e:
            return e.sqlstate
    return None


big = Decimal("12345678901234567890123456789012.3456")  # 36 digits: more than rust_decimal holds
day = datetime.date(2024, 2, 29)
at = datetime.datetime(2024, 2, 29, 12, 30, 0, 123456)
tricky = "O'Brien; DROP TABLE permits; --"

with psycopg.connect(admin, autocommit=True) as conn:
    cur = conn.cursor()
    # parameters of every kind psycopg sends (ints and decimals in binary, text as unknown)
    cur.execute("INSERT INTO measures VALUES (%s, %s, %s, %s, %s)", (1, big, day, at, tricky))
    check(cur.rowcount == 1, f"INSERT rowcount {cur.rowcount}")
    # executemany runs in a pipeline: Parse once, Bind/Execute per row
    cur.executemany(
        "INSERT INTO measures VALUES (%s, %s, %s, %s, %s)",
        [(2, Decimal("-0.0001"), None, None, None), (3, Decimal("7"), day, at, "plain")],
    )
    for binary in (False, True):
        c2 = conn.cursor(binary=binary)
        c2.execute("SELECT id, amount, day, at, note FROM measures WHERE id >= %s ORDER BY id", (1,))
        rows = c2.fetchall()
        check(
            rows
            == [(1, big, day, at, tricky), (2, Decimal("-0.0001"), None, None, None), (3, Decimal("7.0000"), day, at, "plain")],
            f"binary={binary}: {rows!r}",
        )
        check([d.name for d in c2.description] == ["id", "amount", "day", "at", "note"], f"{c2.description}")
    # the parameter's type comes from the column it is compared with
    cur.execute("SELECT count(*) FROM measures WHERE amount > %s", (Decimal("0"),))
    check(cur.fetchone() == (2,), "amount > 0")
    cur.execute("SELECT id FROM measures WHERE note = %s", (tricky,))
    check(cur.fetchall() == [(1,)], "a quote in a parameter is a value, not SQL")
    cur.execute("UPDATE measures SET note = %s WHERE id = %s", ("changed", 3))
    check(cur.rowcount == 1, f"UPDATE rowcount {cur.rowcount}")
    cur.execute("DELETE FROM measures WHERE id = %s", (2,))
    check(cur.rowcount == 1, f"DELETE rowcount {cur.rowcount}")
    cur.execute("SELECT id, note FROM measures ORDER BY id")
    check(cur.fetchall() == [(1, tricky), (3, "changed")], "after UPDATE and DELETE")
    # psycopg prepares a statement run often (named statements), and reuses it
    for i in range(8):
        cur.execute("SELECT count(*) FROM permits WHERE id > %s", (i % 4,), prepare=True)
        check(cur.fetchone() == (4 - i % 4,), f"prepared run {i}")
    # too many decimal places for DECIMAL(38,4): refused, not rounded
    try:
        cur.execute("INSERT INTO measures VALUES (%s, %s, NULL, NULL, NULL)", (9, "1.23456"))
        check(False, "a value with 5 decimal places was stored in DECIMAL(38,4)")
    except errors.NumericValueOutOfRange:
        pass
    # a float for a BIGINT is refused, not truncated (3.7 would otherwise match 3)
    try:
        cur.execute("SELECT count(*) FROM measures WHERE id = %s", (3.7,))
        check(False, "3.7 was read as a BIGINT")
    except errors.NumericValueOutOfRange:
        pass
    # NULL, an untyped parameter (text), an interval
    cur.execute("SELECT NULL, %s, INTERVAL '1 day 2 hours'", (5,))
    row = cur.fetchone()
    check(row == (None, "5", datetime.timedelta(days=1, hours=2)), f"{row!r}")
    # COPY ... TO STDOUT in binary, as bulk readers (ADBC) use it
    with cur.copy("COPY (SELECT id, amount FROM measures ORDER BY id) TO STDOUT (FORMAT BINARY)") as cp:
        cp.set_types(["int8", "numeric"])
        got = list(cp.rows())
    check(got == [(1, big), (3, Decimal("7"))], f"binary COPY: {got!r}")
    # unknown table: 42P01 at Parse
    check(sqlstate_of(admin, "SELECT * FROM nowhere WHERE x = %s", (1,)) == "42P01", "unknown table")

# a transaction block (psycopg's default): reads run; a write is refused before it runs; after
# the ROLLBACK the connection works again; outside a block writes commit
with psycopg.connect(admin) as conn:
    check(conn.execute("SELECT count(*) FROM measures").fetchone() == (2,), "read in a block")
    try:
        conn.execute("INSERT INTO measures VALUES (%s, NULL, NULL, NULL, NULL)", (10,))
        check(False, "a write inside a transaction block ran")
    except errors.ReadOnlySqlTransaction:
        pass
    conn.rollback()
    check(conn.execute("SELECT count(*) FROM measures").fetchone() == (2,), "after the rollback")
    conn.commit()
    conn.autocommit = True
    conn.execute("INSERT INTO measures VALUES (%s, NULL, NULL, NULL, NULL)", (11,))
    check(conn.execute("SELECT count(*) FROM measures").fetchone() == (3,), "autocommit write")

# ana's row filter applies to her parameterized queries too; bob has no grant
with psycopg.connect(ana, autocommit=True) as conn:
    rows = conn.execute("SELECT id FROM permits WHERE owner LIKE %s ORDER BY id", ("%",)).fetchall()
    check(rows == [(1,), (3,)], f"ana sees north only: {rows}")
check(sqlstate_of(bob, "SELECT * FROM permits WHERE id = %s", (1,)) == "42501", "bob is denied")
print("ok")
