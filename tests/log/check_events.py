#!/usr/bin/python3
"""Reads a TensorBoard event file the way TensorBoard does: TFRecords whose length
and data carry masked CRC-32C checksums, each record a tensorflow.Event decoded by
protoc against tensorboard.proto.  Prints one line per record (its step and tags),
or exits 1 naming the first bad record.

Every record is decoded by one protoc run (records.proto frames them as a repeated
tensorflow.Event); the first and the last records are also decoded one by one with
`protoc --decode=tensorflow.Event`, as the issue asks, and must agree.

usage: check_events.py EVENTS_FILE [--allow-torn-tail]
  --allow-torn-tail: the file may end inside a record (a run killed while writing);
                     every record before it must still be whole."""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    t = TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def protoc(message, proto, data):
    r = subprocess.run(["protoc", f"--decode={message}", "-I", HERE, proto],
                       input=data, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"protoc cannot decode the records as {message}: {r.stderr.decode()}")
    return r.stdout.decode()


def summarize(lines):
    """(step, kind, tags) of one decoded Event's text lines (indentation stripped)."""
    tags = [l.split('"')[1] for l in lines if l.startswith("tag:")]
    step = next((l.split(":")[1].strip() for l in lines if l.startswith("step:")), "0")
    text = "\n".join(lines)
    kind = "file_version" if "file_version" in text else "histo" if "histo" in text else "scalar"
    return step, kind, tags


def split_events(text):
    """The Records text format: `event {` ... `}` blocks at the top level."""
    events, cur, depth = [], None, 0
    for line in text.splitlines():
        s = line.strip()
        if depth == 0 and s == "event {":
            cur, depth = [], 1
            continue
        if s.endswith("{"):
            depth += 1
        elif s == "}":
            depth -= 1
            if depth == 0:
                events.append(cur)
                continue
        cur.append(s)
    return events


def read_events(path, torn_ok=False):
    """The records of an event file, checksums checked, and each decoded by protoc:
    (bodies, events as lists of text lines, what a torn tail left or None)."""
    data = open(path, "rb").read()
    pos = 0
    bodies = []
    torn = None
    while pos < len(data):
        n = len(bodies)
        if pos + 12 > len(data):
            if torn_ok:
                torn = f"torn tail: {len(data) - pos} bytes after record {n}"
                break
            sys.exit(f"record {n}: the file ends inside its header")
        length = struct.unpack("<Q", data[pos:pos + 8])[0]
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked(data[pos:pos + 8]):
            sys.exit(f"record {n}: bad length checksum")
        end = pos + 12 + length + 4
        if end > len(data):
            if torn_ok:
                torn = f"torn tail: record {n} is cut short"
                break
            sys.exit(f"record {n}: the file ends inside its data")
        body = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[end - 4:end])[0] != masked(body):
            sys.exit(f"record {n}: bad data checksum")
        bodies.append(body)
        pos = end
    framed = b"".join(b"\x0a" + varint(len(b)) + b for b in bodies)
    events = split_events(protoc("nndtest.Records", "records.proto", framed))
    if len(events) != len(bodies):
        sys.exit(f"protoc decoded {len(events)} events from {len(bodies)} records")
    return bodies, events, torn


def main():
    path = sys.argv[1]
    bodies, events, torn = read_events(path, "--allow-torn-tail" in sys.argv)
    for n in sorted({0, 1, 2, len(bodies) - 1} & set(range(len(bodies)))):
        one = [l.strip() for l in protoc("tensorflow.Event", "tensorboard.proto", bodies[n]).splitlines()]
        if summarize(one) != summarize(events[n]):
            sys.exit(f"record {n}: decoded alone it differs from the bulk decoding")
    for n, ev in enumerate(events):
        step, kind, tags = summarize(ev)
        print(f"record {n}: step {step} {kind} {' '.join(tags)}")
        if n == 0 and 'file_version: "brain.Event:2"' not in ev:
            sys.exit("record 0 is not the file version")
    if torn:
        print(torn)
    print(f"{len(bodies)} records")


if __name__ == "__main__":
    main()
