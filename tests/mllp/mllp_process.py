"""A stand-alone MLLP listener for the crash test: ``python mllp_process.py DATABASE_URL``.

Prints the bound port on stdout, then serves until killed.
"""

from __future__ import annotations

import sys
import time

from medarchive.app import build_services
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import open_message_log
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions
from medarchive.settings import Settings

if __name__ == "__main__":
    url = sys.argv[1]
    services = build_services(Settings(database_url=url, auth="off"))
    gateway = Gateway(services.submit, open_message_log(url))
    port = BackgroundListener(MllpServer(gateway, ServerOptions(port=0))).start()
    print(port, flush=True)
    while True:
        time.sleep(3600)
