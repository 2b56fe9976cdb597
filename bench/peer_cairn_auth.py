"""cairn with --auth on and an API key, for the peer benchmark beside peer_cairn.py (auth off)."""

import os
import sys

os.environ["CAIRN_BENCH_AUTH"] = "on"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_cairn  # noqa: E402
from peer_cairn import finish, init, log, read_back, run_info, setup, versions  # noqa: E402,F401

NAME = "cairn-auth"

if __name__ == "__main__":
    peer_cairn.common.main(sys.modules[__name__])
