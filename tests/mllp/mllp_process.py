"""A stand-alone MLLP listener for the crash test: ``python mllp_process.py DATABASE_URL``.

Prints the bound port on stdout, then serves until killed.
"""

from __future__ import annotations

import sys
import time

from medarchive.app import build_gateway
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions
from medarchive.settings import Settings

if __name__ == "__main__":
    url = sys.argv[1]
    gateway, services = build_gateway(Settings(database_url=url, auth="off"))
    port = BackgroundListener(MllpServer(gateway, ServerOptions(port=0))).start()
    print(port, flush=True)
    while True:
        time.sleep(3600)
