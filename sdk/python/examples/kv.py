"""KV: write, compare-and-set, read, watch. PLUM_CONTROLLERS and PLUM_TOKEN(_FILE) as for plumctl."""

from plum_sdk import Client, Conflict

with Client.from_env() as plum:
    w = plum.kv.put("app", "color", "red")
    try:
        plum.kv.compare_and_set("app", "color", "blue", expect_version=w.version)
    except Conflict:
        print("someone else wrote it first")
    print(plum.kv.get("app", "color"))
    for change in plum.kv.watch("app", prefix="", from_index=0):
        print(change.index, [(i.key, i.value) for i in change.items])
