"""gofherd's README example, ported: ten works on a herd that starts paused.

Run it and, from another terminal, unpause the herd:

    curl -XGET localhost:5555/herd
    curl -XPATCH 127.0.0.1:5555/herd -d '{"num": 10}'

With ``--auto`` it unpauses itself after a moment, so it runs end to end unattended.
"""

from __future__ import annotations

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
    herd = hx.HerdExecutor(0, process=process_work, max_retries=0)
    threading.Thread(target=load_work, args=(herd,)).start()
    if "--auto" in sys.argv:
        threading.Timer(0.2, setattr, (herd, "herd_size", 10)).start()
    else:
        print("herd paused: curl -XPATCH 127.0.0.1:5555/herd -d '{\"num\": 10}'", file=sys.stderr)
        herd.herd_size = 10  # replaced by herd.serve("127.0.0.1:5555") with the server
    for work in herd.output_chan():
        print(f"{work.id}, status: {work.status}, result:{work.result}")
    herd.shutdown()


if __name__ == "__main__":
    main()
