"""cairn in offline mode (the run directory only), for the peer benchmark: see peer_cairn.py."""

import os
import sys

os.environ["CAIRN_BENCH_MODE"] = "offline"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import peer_cairn  # noqa: E402

peer_cairn.NAME = "cairn-offline"

if __name__ == "__main__":
    common.main(peer_cairn)
