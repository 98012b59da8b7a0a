"""Discovery from the watched cache, filtered, balanced."""

from plum_sdk import Balancer, Client, Query

with Client.from_env() as plum:
    found = plum.discover("web", Query(version="^1.2", protocol="http", labels={"zone": "a"}))
    if found.stale:
        print(f"the cluster is unreachable; endpoints last confirmed {found.age:.1f} s ago")
    endpoint = Balancer("p2c").pick(found.endpoints)
    print(endpoint.address if endpoint else "no endpoint")
