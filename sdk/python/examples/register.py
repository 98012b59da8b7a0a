"""Register a service, keep it alive, deregister on exit."""

import time

from plum_sdk import Client, Instance

with Client.from_env() as plum:
    registrar = plum.registrar(ttl=5.0)  # declared TTL; heartbeats every ~1.25 s
    registrar.register(Instance("web-1", "web", 8080, ip="10.0.0.1", version="1.2.0"))
    time.sleep(60)  # serve...
# leaving the block deregisters web-1 and stops the heartbeat thread
