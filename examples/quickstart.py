"""gofherd's README example, ported: ten works on a herd that starts paused.

Run it: it serves the herd's control plane on 127.0.0.1:5555, as gofherd's example does,
and waits. From another terminal, look at the herd and unpause it:

    curl -XGET localhost:5555/herd
    curl -XPATCH 127.0.0.1:5555/herd -d '{"num": 10}'

``--addr host:port`` serves elsewhere (port 0 picks a free one). With ``--auto`` it
unpauses itself after a moment and runs end to end unattended, serving only if ``--addr``
is given.
"""

from __future__ import annotations

import argparse
import sys
import threading

import herdexec as hx


def process_work(work: hx.Work) -> hx.Status:
    """The processing logic: add ten to the body and report the result."""
    work.set_result(work.body + 10)
    return hx.Status.SUCCESS


def load_work(herd: hx.HerdExecutor) -> None:
    for i in range(10):
        # Blocks until a gopher takes the work: on a paused herd, until it is resized.
        herd.send_work(hx.Work(f"workID:{i}", i))
    herd.close_input()  # done sending: output_chan() ends once the herd is done


def main() -> None:
    parser = argparse.ArgumentParser(description="gofherd's README example, ported.")
    parser.add_argument("--auto", action="store_true", help="unpause the herd by itself")
    parser.add_argument("--addr", help="serve on host:port (default 127.0.0.1:5555)")
    args = parser.parse_args()
    addr = args.addr or (None if args.auto else "127.0.0.1:5555")

    # A paused herd, without retries, serving its control plane (gofherd's SetAddr).
    herd = hx.HerdExecutor(0, process=process_work, max_retries=0, addr=addr)
    threading.Thread(target=load_work, args=(herd,)).start()
    if args.auto:
        threading.Timer(0.2, setattr, (herd, "herd_size", 10)).start()
    if herd.server is not None:
        url = herd.server.url
        print(f"herd paused; look at it: curl -XGET {url}/herd", file=sys.stderr, flush=True)
        print(f"unpause it: curl -XPATCH {url}/herd -d '{{\"num\": 10}}'", file=sys.stderr)
    for work in herd.output_chan():
        print(f"{work.id}, status: {work.status}, result:{work.result}")
    herd.shutdown()


if __name__ == "__main__":
    main()
