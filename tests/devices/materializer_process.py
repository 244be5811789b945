"""The materializer as its own process for the crash test:
``python materializer_process.py DATABASE_URL BATCH``. Prints ``ready`` once it runs; runs until
killed."""

from __future__ import annotations

import sys
import time

from medarchive.app import build_devices, build_services
from medarchive.settings import Settings

if __name__ == "__main__":
    settings = Settings(database_url=sys.argv[1], auth="off",
                        device_materialize_batch=int(sys.argv[2]))
    services = build_services(settings)
    build_devices(services, start=True)
    print("ready", flush=True)
    while True:
        time.sleep(3600)
