#!/usr/bin/env python3
"""Live heap per parked guest by owner, from two dhat profiles of
host/benches/suspend_heap.rs (N1 and N2 guests parked): each site's live
bytes and blocks at the end of the profile, (N2 - N1) / (N2 - N1 guests),
so fixed costs cancel out.

    python3 bench/heap_by_owner.py target/dhat-suspend-1000.json target/dhat-suspend-2000.json [--sites K]

Owners come from the frames of each allocation's backtrace: the innermost
frame matching a rule below names it. `--sites K` also prints the K largest
sites with their first meaningful frames.
"""
import json
import re
import sys
from collections import defaultdict

# (owner, pattern). Specific rules are tried first on every frame, innermost
# first (type names in allocator frames count); the generic ones after, on
# frames that are not allocator internals.
RULES = [
    ("wasmtime Store (StoreInner<HostState>, HostState inline)", r"StoreInner<sipbox[^>]*>\(|new_uninit_box<wasmtime::runtime::store::StoreInner"),
    ("wasmtime store: module/code registry", r"module::registry|register_component|register_module|StoreCodePC|EngineCodePC"),
    ("wasmtime core instances: Instance + vmctx", r"new<wasmtime::runtime::vm::instance::Instance>"),
    ("wasmtime core instances: memories/tables vecs", r"instance/allocator\.rs|MemoryAllocationIndex|TableAllocationIndex"),
    ("wasmtime component instance: ComponentInstance + vmctx", r"ComponentInstance>|runtime/vm/component\.rs"),
    ("wasmtime store: instance list, call contexts, handle tables", r"StoreInstance|CallContext|handle_table|push_component_instance|component/instance\.rs"),
    ("wasmtime fiber", r"wasmtime-internal-fiber|make_fiber"),
    ("component resource table", r"ResourceTable|resource_table"),
    ("wasi", r"wasmtime_wasi|WasiCtx"),
    ("wait-for-event host future (bindgen Box::pin)", r"new<sipbox::runtime::bindings::sipbox::route::events::add_to_linker_instance"),
    ("EBR waiter (entry, filters, oneshot)", r"events::ebr|events/ebr|oneshot::Inner<sipbox::events::Event>|wait_for_event"),
    ("route invocation future (Box::pin in Runtime::on_request)", r"pin<sipbox::runtime::\{impl#\d+\}::on_request"),
    ("route task (tokio task cell, proxy::spawn_route)", r"Cell<sipbox::transaction::proxy::.*spawn_route"),
    ("ServerTx driver task (tokio task cell, server_tx::run)", r"Cell<sipbox::transaction::server_tx::run"),
    ("ServerTx inbox (mpsc channel)", r"ServerEvent"),
    ("ServerTx: last response kept for retransmission", r"src/sip/response\.rs"),
    ("ServerTxInner (Arc)", r"ServerTxInner"),
    ("request: datagram bytes", r"copy_from_slice \(bytes|transport/udp\.rs:52"),
    ("request: parsed header index", r"sipbox::sip::message::Entry|src/sip/"),
]
GENERIC = [
    ("other host imports", r"add_to_linker_instance|runtime/host/"),
    ("transaction tables (servers, by_id)", r"transaction/key\.rs|transaction/proxy\.rs|insert_new"),
    ("transaction other", r"sipbox::transaction|src/transaction/"),
    ("runtime other (HostState fields, ...)", r"sipbox::runtime|src/runtime/"),
    ("transport", r"sipbox::transport|src/transport/"),
    ("events other", r"sipbox::events|src/events/"),
    ("wasmtime other", r"wasmtime"),
    ("tokio other", r"tokio"),
]
GENERIC = [(owner, re.compile(p)) for owner, p in GENERIC]
RULES = [(owner, re.compile(p)) for owner, p in RULES]
# Allocator and collection internals: never the interesting frame.
BORING = re.compile(
    r"^(__rust_|__rdl_|alloc|alloc_|allocate|alloc_impl|box_new|new_uninit|try_alloc|try_new|finish_grow|"
    r"grow_|try_reserve|reserve|with_capacity|try_allocate_in|exchange_malloc|<dhat|dhat::|trace|new_backtrace)"
)


def frames(profile, pp):
    out = [re.sub(r"^0x[0-9a-f]+: ", "", profile["ftbl"][i]) for i in pp["fs"]]
    # Drop dhat's own frames (up to its global allocator entry point).
    cut = 0
    for j, f in enumerate(out[:16]):
        if "dhat" in f or "backtrace" in f or f.startswith("trace"):
            cut = j + 1
    return out[cut:]


def owner_of(fs):
    for f in fs:
        for owner, pat in RULES:
            if pat.search(f):
                return owner
    for f in fs:
        if BORING.match(f):
            continue
        for owner, pat in GENERIC:
            if pat.search(f):
                return owner
    return "unclassified"


def site_of(fs):
    """The first few frames that are not allocator internals."""
    useful = [f for f in fs if not BORING.match(f)]
    return " <- ".join(re.sub(r"<.*>", "<..>", f)[:110] for f in useful[:3])


def load(path):
    profile = json.load(open(path))
    n = int(re.search(r"suspend-(\d+)", path).group(1))
    by_owner = defaultdict(lambda: [0, 0])
    by_site = defaultdict(lambda: [0, 0, None])
    for pp in profile["pps"]:
        fs = frames(profile, pp)
        owner = owner_of(fs)
        by_owner[owner][0] += pp["eb"]
        by_owner[owner][1] += pp["ebk"]
        key = (owner, site_of(fs))
        by_site[key][0] += pp["eb"]
        by_site[key][1] += pp["ebk"]
    return n, by_owner, by_site


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    k = int(sys.argv[sys.argv.index("--sites") + 1]) if "--sites" in sys.argv else 0
    args = [a for a in args if not a.isdigit()]
    (n1, o1, s1), (n2, o2, s2) = load(args[0]), load(args[1])
    dn = n2 - n1
    rows = []
    for owner in set(o1) | set(o2):
        b = (o2[owner][0] - o1[owner][0]) / dn
        blk = (o2[owner][1] - o1[owner][1]) / dn
        rows.append((owner, b, blk))
    rows.sort(key=lambda r: -r[1])
    total_b = sum(r[1] for r in rows)
    total_k = sum(r[2] for r in rows)
    print(f"| owner | bytes per parked guest | blocks per guest |\n|---|---|---|")
    for owner, b, blk in rows:
        if abs(b) >= 8 or abs(blk) >= 0.05:
            print(f"| {owner} | {b:.0f} | {blk:.2f} |")
    print(f"| **total** | **{total_b:.0f}** | **{total_k:.1f}** |")
    if k:
        sites = []
        for key in set(s1) | set(s2):
            b = (s2[key][0] - s1[key][0]) / dn
            blk = (s2[key][1] - s1[key][1]) / dn
            sites.append((b, blk, key))
        sites.sort(key=lambda s: -s[0])
        print(f"\n| bytes | blocks | owner | site |\n|---|---|---|---|")
        for b, blk, (owner, site) in sites[:k]:
            print(f"| {b:.0f} | {blk:.2f} | {owner} | {site} |")


if __name__ == "__main__":
    main()
