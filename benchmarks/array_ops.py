#!/usr/bin/env python3
"""Time the emulator's array operations through its REST 2 API: snapshot, copy and diff.

For each volume size: create a volume, connect it (a loop device appears), write
--written bytes of random data spread over it through the device, then per round:
protection-group snapshot (s1), overwrite a known set of scattered 1 MiB blocks,
snapshot again (s2), copy s2 to a new volume, and diff s2 against s1. Prints the
median times and the changed bytes the diff reports against the bytes overwritten.

--hint-sweep also measures, on files made directly in the pool, how the XFS
extent-size / CoW extent-size hint trades clone (snapshot) time against diff precision.

Needs root (loop devices, XFS pool). Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

MiB = 2**20
GiB = 2**30
CHUNK = 8 * MiB  # unit of the initial fill
OVERWRITE_UNIT = 1 * MiB


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_bytes(text: str, unit: int = 1) -> int:
    """'64k', '1m', '2g' or a plain number (in `unit`)."""
    t = text.strip().lower()
    mult = {"k": 2**10, "m": MiB, "g": GiB}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(float(t) * unit)


def human(n: int | float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def hint_label(n: int) -> str:
    if n == 0:
        return "none"
    return f"{n // MiB}m" if n % MiB == 0 else f"{n // 1024}k"


# -- data written through a block device ---------------------------------------------------------
def fill_offsets(size: int, written: int) -> list[int]:
    """Offsets of the CHUNK-sized pieces that spread `written` bytes evenly over a device of `size`."""
    n = max(1, written // CHUNK)
    stride = max(CHUNK, (size // n) // CHUNK * CHUNK)
    offsets = [i * stride for i in range(n) if i * stride + CHUNK <= size]
    if len(offsets) < n:
        raise SystemExit(f"cannot spread {human(written)} over {human(size)}")
    return offsets


def write_fill(dev: str, offsets: list[int], rng: random.Random) -> None:
    fd = os.open(dev, os.O_WRONLY)
    try:
        for off in offsets:
            os.pwrite(fd, rng.randbytes(CHUNK), off)
        os.fsync(fd)
    finally:
        os.close(fd)


def overwrite(dev: str, fill: list[int], total: int, rng: random.Random) -> dict[int, bytes]:
    """Overwrite `total` bytes as distinct 1 MiB blocks picked at random inside the filled data.
    Returns {offset: blake2b of the new data}."""
    slots = [off + i * OVERWRITE_UNIT for off in fill for i in range(CHUNK // OVERWRITE_UNIT)]
    picks = sorted(rng.sample(slots, min(len(slots), total // OVERWRITE_UNIT)))
    order = picks[:]
    rng.shuffle(order)
    hashes = {}
    fd = os.open(dev, os.O_WRONLY)
    try:
        for off in order:
            data = rng.randbytes(OVERWRITE_UNIT)
            hashes[off] = hashlib.blake2b(data).digest()
            os.pwrite(fd, data, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashes


def verify_image(path: Path, hashes: dict[int, bytes]) -> bool:
    """The snapshot image holds the data written at those offsets."""
    with open(path, "rb") as f:
        for off, digest in hashes.items():
            f.seek(off)
            if hashlib.blake2b(f.read(OVERWRITE_UNIT)).digest() != digest:
                return False
    return True


def covered(ranges: list[tuple[int, int]], offsets: list[int], unit: int) -> bool:
    """Every [off, off+unit) lies inside the union of the reported ranges."""
    ranges = sorted(ranges)
    merged: list[list[int]] = []
    for o, n in ranges:
        if merged and o <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], o + n)
        else:
            merged.append([o, o + n])
    starts = [m[0] for m in merged]
    for off in offsets:
        i = bisect.bisect_right(starts, off) - 1
        if i < 0 or merged[i][1] < off + unit:
            return False
    return True


def ficlone_ms(image: Path) -> float:
    """Time FICLONE of a pool image into a scratch file beside it: the data-plane cost of a snapshot."""
    from copydata.emulator.blocks import reflink
    scratch = image.with_name(f".bench-clone-{os.getpid()}.img")
    try:
        with open(image, "rb") as fs, open(scratch, "wb") as fd:
            t0 = time.perf_counter()
            reflink(fs.fileno(), fd.fileno())
            return (time.perf_counter() - t0) * 1000
    finally:
        scratch.unlink(missing_ok=True)


def round_trip(api: Api, n: int = 10) -> tuple[float, float]:
    """Median GET /arrays time back to back, then with api.settle seconds of idle before each call."""
    api.ok(api.c.get_arrays(), "get arrays")
    back = []
    for _ in range(n):
        t0 = time.perf_counter()
        api.ok(api.c.get_arrays(), "get arrays")
        back.append((time.perf_counter() - t0) * 1000)
    settled = []
    for _ in range(n):
        time.sleep(max(api.settle, 0.25))
        t0 = time.perf_counter()
        api.ok(api.c.get_arrays(), "get arrays")
        settled.append((time.perf_counter() - t0) * 1000)
    return statistics.median(back), statistics.median(settled)


def extent_count(path: Path) -> int:
    from copydata.emulator.blocks import fiemap
    with open(path, "rb") as f:
        return sum(1 for _ in fiemap(f.fileno()))


# -- REST 2 helpers ------------------------------------------------------------------------------
class Api:
    def __init__(self, info: dict, settle: float = 0.0):
        self.settle = settle
        from pypureclient import flasharray
        from pypureclient.configuration import Configuration
        # py-pure-client 1.96 ignores ssl_cert=; the CA goes through a Configuration.
        self.c = flasharray.Client(info["target"], api_token=info["api_token"],
                                   configuration=Configuration(ssl_ca_cert=info["ca_file"]), verify_ssl=True)

    @staticmethod
    def ok(resp, what: str):
        from pypureclient.responses import ErrorResponse
        if isinstance(resp, ErrorResponse):
            msgs = "; ".join(f"{e.message} ({e.context})" for e in resp.errors)
            raise RuntimeError(f"{what}: HTTP {resp.status_code}: {msgs}")
        return resp

    def close(self) -> None:
        """Log out while the emulator still answers (not at interpreter exit)."""
        with contextlib.suppress(Exception):
            self.c._token_man.close_session()

    def timed(self, what: str, fn, *args, **kwargs) -> tuple[float, object]:
        if self.settle:
            time.sleep(self.settle)
        t0 = time.perf_counter()
        resp = self.ok(fn(*args, **kwargs), what)
        return (time.perf_counter() - t0) * 1000, resp

    def volume(self, name: str) -> dict:
        resp = self.ok(self.c.get_volumes(names=[name]), f"get volume {name}")
        return next(iter(resp.items)).to_dict()

    def snapshot_serial(self, name: str) -> str:
        resp = self.ok(self.c.get_volume_snapshots(names=[name]), f"get snapshot {name}")
        return next(iter(resp.items)).serial

    def drop_volume(self, name: str) -> None:
        from pypureclient.flasharray import VolumePatch
        self.ok(self.c.patch_volumes(names=[name], volume=VolumePatch(destroyed=True)), f"destroy {name}")
        self.ok(self.c.delete_volumes(names=[name]), f"eradicate {name}")

    def drop_pgsnap(self, name: str) -> None:
        from pypureclient.flasharray import ProtectionGroupSnapshotPatch
        self.ok(self.c.patch_protection_group_snapshots(
            names=[name], protection_group_snapshot=ProtectionGroupSnapshotPatch(destroyed=True)), f"destroy {name}")
        self.ok(self.c.delete_protection_group_snapshots(names=[name]), f"eradicate {name}")


# -- the REST benchmark --------------------------------------------------------------------------
def bench_size(api: Api, info: dict, size: int, args, rng: random.Random, tag: str) -> dict:
    from pypureclient.flasharray import HostPost, ProtectionGroupSnapshotPost, Reference, VolumePost

    c = api.c
    vol, pg, host = f"{tag}-v{size // GiB}g", f"{tag}-pg{size // GiB}g", f"{tag}-h{size // GiB}g"
    pool_images = Path(info["pool"]) / "images"
    undo: list = []  # cleanup steps, run in reverse
    res: dict = {"size": size, "snapshot_ms": [], "copy_ms": [], "diff_ms": [], "reported": [], "overwritten": [],
                 "covered": [], "verified": [], "extents": [], "diff_items": [], "ficlone_ms": []}
    try:
        api.ok(c.post_volumes(names=[vol], volume=VolumePost(provisioned=size)), "create volume")
        undo.append(lambda: api.drop_volume(vol))
        api.ok(c.post_protection_groups(names=[pg]), "create pgroup")
        undo.append(lambda: (api.ok(c.patch_protection_groups(names=[pg], protection_group=_pg_destroyed()), "destroy pg"),
                             api.ok(c.delete_protection_groups(names=[pg]), "eradicate pg")))
        api.ok(c.post_protection_groups_volumes(group_names=[pg], member_names=[vol]), "add member")
        api.ok(c.post_hosts(names=[host], host=HostPost(iqns=[f"iqn.2024-01.org.copydata:{host}"])), "create host")
        undo.append(lambda: api.ok(c.delete_hosts(names=[host]), "delete host"))
        api.ok(c.post_connections(host_names=[host], volume_names=[vol]), "connect")
        undo.append(lambda: api.ok(c.delete_connections(host_names=[host], volume_names=[vol]), "disconnect"))
        serial = api.volume(vol)["serial"]
        dev = str(Path(info["devices"]) / f"wwn-0x624a9370{serial.lower()}")
        if not os.path.exists(dev):
            raise RuntimeError(f"no device at {dev}: is the emulator running as root?")
        dev = os.path.realpath(dev)
        fill = fill_offsets(size, args.written)
        log(f"{human(size)}: writing {human(len(fill) * CHUNK)} of random data in {len(fill)} pieces to {dev}")
        t0 = time.perf_counter()
        write_fill(dev, fill, rng)
        log(f"{human(size)}: written in {time.perf_counter() - t0:.1f} s")

        for r in range(1, args.rounds + 1):
            s1, s2, copy = f"r{r}s1", f"r{r}s2", f"{vol}-copy{r}"
            ms, _ = api.timed("snapshot s1", c.post_protection_group_snapshots, source_names=[pg],
                              protection_group_snapshot=ProtectionGroupSnapshotPost(suffix=s1))
            undo.append(lambda n=f"{pg}.{s1}": api.drop_pgsnap(n))
            res["snapshot_ms"].append(ms)
            res["extents"].append(extent_count(pool_images / f"{serial}.img"))
            hashes = overwrite(dev, fill, args.overwrite, rng)
            ms, _ = api.timed("snapshot s2", c.post_protection_group_snapshots, source_names=[pg],
                              protection_group_snapshot=ProtectionGroupSnapshotPost(suffix=s2))
            undo.append(lambda n=f"{pg}.{s2}": api.drop_pgsnap(n))
            res["snapshot_ms"].append(ms)
            res["ficlone_ms"].append(ficlone_ms(pool_images / f"{serial}.img"))
            snap1, snap2 = f"{pg}.{s1}.{vol}", f"{pg}.{s2}.{vol}"
            ms, _ = api.timed("copy", c.post_volumes, names=[copy], volume=VolumePost(source=Reference(name=snap2)))
            undo.append(lambda n=copy: api.drop_volume(n))
            res["copy_ms"].append(ms)
            if api.settle:
                time.sleep(api.settle)
            t0 = time.perf_counter()
            resp = api.ok(c.get_volumes_diff(names=[snap2], base_name=snap1, block_size=args.block_size,
                                             segment_offset=0, segment_length=size), "diff")
            ranges = [(i.offset, i.length) for i in resp.items]
            res["diff_ms"].append((time.perf_counter() - t0) * 1000)
            res["diff_items"].append(len(ranges))
            res["reported"].append(sum(n for _, n in ranges))
            res["overwritten"].append(len(hashes) * OVERWRITE_UNIT)
            res["covered"].append(covered(ranges, list(hashes), OVERWRITE_UNIT))
            copy_serial = api.volume(copy)["serial"]
            res["verified"].append(verify_image(pool_images / f"{api.snapshot_serial(snap2)}.img", hashes)
                                   and verify_image(pool_images / f"{copy_serial}.img", hashes))
            log(f"{human(size)} round {r}: snapshot {res['snapshot_ms'][-2]:.1f}/{res['snapshot_ms'][-1]:.1f} ms, "
                f"copy {res['copy_ms'][-1]:.1f} ms, diff {res['diff_ms'][-1]:.1f} ms "
                f"({len(ranges)} ranges, {human(res['reported'][-1])} reported, "
                f"{human(res['overwritten'][-1])} overwritten, covered={res['covered'][-1]}, "
                f"data ok={res['verified'][-1]}, {res['extents'][-1]} extents)")
            # drop this round's copy and snapshots now: keep the pool small
            for _ in range(3):
                undo.pop()()
    finally:
        while undo:
            step = undo.pop()
            try:
                step()
            except Exception as exc:  # keep cleaning
                log(f"cleanup step failed: {exc}")
    return res


def _pg_destroyed():
    from pypureclient.flasharray import ProtectionGroup
    return ProtectionGroup(destroyed=True)


# -- the hint sweep ------------------------------------------------------------------------------
def hint_sweep(info: dict, size: int, args, rng_seed: int) -> list[dict]:
    """Per hint: a file in the pool with extsize = cowextsize = hint, attached to a loop device with
    direct I/O as a connected volume is. Fill, then a few generations of snapshot + scattered 8 KiB
    page writes (a database's pattern); time FICLONE, count extents, and diff the last two snapshots."""
    from copydata import sysutil
    from copydata.emulator.blocks import reflink, set_extent_hints
    from copydata.emulator.diff import extent_diff

    folder = Path(info["pool"]) / "bench-hint-sweep"
    folder.mkdir(exist_ok=True)
    page = 8192
    results = []
    try:
        for hint in args.hints:
            rng = random.Random(rng_seed)  # the same workload for every hint
            base = folder / f"vol-{hint_label(hint)}.img"
            with open(base, "wb") as f:
                if hint:
                    set_extent_hints(f.fileno(), hint, hint)
                f.truncate(size)
            dev = sysutil.loop_attach(base)
            row = {"hint": hint, "clone_ms": [], "diff_ms": [], "extents_fill": 0, "extents_end": 0}
            try:
                # Fill: the same pieces as the REST benchmark, each written as 64 KiB blocks in random
                # order with an fsync every 4 MiB, so allocation sees scattered writes into holes.
                fill = fill_offsets(size, args.written)
                blocks = [off + i for off in fill for i in range(0, CHUNK, 64 * 1024)]
                rng.shuffle(blocks)
                fd = os.open(dev, os.O_WRONLY)
                try:
                    for i, off in enumerate(blocks, 1):
                        os.pwrite(fd, rng.randbytes(64 * 1024), off)
                        if i % 64 == 0:
                            os.fsync(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                row["extents_fill"] = extent_count(base)
                row["alloc_fill"] = os.stat(base).st_blocks * 512
                pages = [off + i for off in fill for i in range(0, CHUNK, page)]
                snaps = []
                written: set[int] = set()
                for g in range(args.generations + 1):
                    snap = folder / f"vol-{hint_label(hint)}.s{g}.img"
                    with open(base, "rb") as fs, open(snap, "wb") as fd_:
                        if hint:
                            set_extent_hints(fd_.fileno(), hint, hint)
                        t0 = time.perf_counter()
                        reflink(fs.fileno(), fd_.fileno())
                        row["clone_ms"].append((time.perf_counter() - t0) * 1000)
                    snaps.append(snap)
                    if g == args.generations:
                        break
                    # churn: scattered 8 KiB page writes, fsync every 64 pages
                    written = set(rng.sample(pages, args.churn // page))
                    order = list(written)
                    rng.shuffle(order)
                    fd = os.open(dev, os.O_WRONLY)
                    try:
                        for i, off in enumerate(order, 1):
                            os.pwrite(fd, rng.randbytes(page), off)
                            if i % 64 == 0:
                                os.fsync(fd)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                row["extents_end"] = extent_count(base)
                row["alloc_end"] = os.stat(base).st_blocks * 512
                # precision: diff the last two snapshots at 4 KiB (the pool's block) and at --block-size
                truth = len(written) * page
                for bs in (4096, args.block_size):
                    t0 = time.perf_counter()
                    ranges = extent_diff(str(snaps[-1]), str(snaps[-2]), 0, size, bs)
                    ms = (time.perf_counter() - t0) * 1000
                    exact = _aligned_union(sorted(written), page, bs)
                    row[f"diff_{bs}"] = (ms, sum(n for _, n in ranges), exact,
                                         covered(ranges, sorted(written), page), len(ranges))
                row["truth"] = truth
                results.append(row)
                d = row[f"diff_{4096}"]
                log(f"hint {hint_label(hint)}: extents {row['extents_fill']} after fill, {row['extents_end']} after "
                    f"churn; clone ms {', '.join(f'{x:.1f}' for x in row['clone_ms'])}; diff@4k {d[0]:.1f} ms "
                    f"reports {human(d[1])} for {human(truth)} written (covered={d[3]})")
            finally:
                sysutil.loop_detach(dev)
                for p in folder.glob(f"vol-{hint_label(hint)}*.img"):
                    p.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def _aligned_union(offsets: list[int], unit: int, bs: int) -> int:
    """Bytes in the union of [off, off+unit) rounded out to bs: the ideal answer at that block size."""
    blocks = set()
    for off in offsets:
        for b in range(off // bs, (off + unit - 1) // bs + 1):
            blocks.add(b)
    return len(blocks) * bs


# -- output --------------------------------------------------------------------------------------
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_table(rows: list[dict], args, rtt: tuple[float, float], hint: int) -> None:
    print(f"\nREST 2 array operations (emulator, py-pure-client 1.96), median of {args.rounds} rounds; "
          f"{human(args.written)} random data written per volume, {human(args.overwrite)} overwritten "
          f"in 1 MiB blocks between s1 and s2;\ndiff block_size {args.block_size}; pool extent hint "
          f"{hint_label(hint)}; {os.cpu_count()} CPUs; {args.settle:g} s idle before each timed call")
    print(f"GET /arrays round trip: {rtt[0]:.1f} ms back to back, {rtt[1]:.1f} ms after 0.25 s idle")
    hdr = (f"{'size':>9} | {'snapshot ms':>11} | {'FICLONE ms':>10} | {'copy ms':>8} | {'diff ms':>8} | "
           f"{'diff ranges':>11} | {'changed bytes reported':>22} | {'bytes written':>13} | {'extents':>7} | ok")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ok = all(r["covered"]) and all(r["verified"])
        print(f"{human(r['size']):>9} | {med(r['snapshot_ms']):>11.1f} | {med(r['ficlone_ms']):>10.1f} | "
              f"{med(r['copy_ms']):>8.1f} | "
              f"{med(r['diff_ms']):>8.1f} | {int(med(r['diff_items'])):>11} | {int(med(r['reported'])):>22,} | "
              f"{int(med(r['overwritten'])):>13,} | {int(med(r['extents'])):>7} | {'yes' if ok else 'NO'}")
    print("snapshot = POST protection-group-snapshots (s1 and s2 of every round); FICLONE = the same clone "
          "done directly\non the volume's pool file after s2 (no REST); copy = POST volumes from the s2 member "
          "snapshot; diff = GET volumes/diff s2\nvs s1, fully iterated; extents = the volume file's extents at s1; "
          "ok = every overwritten block reported and the s2 snapshot\nand the copy hold the new data.")


def print_sweep(rows: list[dict], args, size: int) -> None:
    print(f"\nXFS extent-size hint sweep (extsize = cowextsize = hint), file of {human(size)} in the pool on a "
          f"direct-I/O loop device:\n{human(args.written)} filled in 64 KiB writes (random order), then "
          f"{args.generations} generations of [FICLONE snapshot + {human(args.churn)} of random 8 KiB page "
          f"writes]; diff = extent_diff of the last two snapshots")
    bs = args.block_size
    hdr = (f"{'hint':>5} | {'extents fill':>12} | {'extents end':>11} | {'alloc fill':>10} | {'alloc end':>10} | "
           f"{'clone ms fill':>13} | {'clone ms churn':>14} | "
           f"{'diff ms':>7} | {'written':>9} | {'reported @4k':>12} | {'x':>5} | {'ideal @' + hint_label(bs):>11} | "
           f"{'reported @' + hint_label(bs):>13} | {'x':>5} | ok")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        d4, db = r["diff_4096"], r[f"diff_{bs}"]
        print(f"{hint_label(r['hint']):>5} | {r['extents_fill']:>12} | {r['extents_end']:>11} | "
              f"{human(r['alloc_fill']):>10} | {human(r['alloc_end']):>10} | "
              f"{r['clone_ms'][0]:>13.1f} | {med(r['clone_ms'][1:]):>14.1f} | {d4[0]:>7.1f} | {human(r['truth']):>9} | "
              f"{human(d4[1]):>12} | {d4[1] / d4[2]:>5.2f} | {human(db[2]):>11} | {human(db[1]):>13} | "
              f"{db[1] / db[2]:>5.2f} | {'yes' if d4[3] and db[3] else 'NO'}")
    print("clone ms fill = FICLONE right after the fill; clone ms churn = median FICLONE after each churn "
          "generation;\nextents = the file's extents after the fill / at the end; alloc = the file's allocated\nbytes (st_blocks, includes unwritten preallocation and CoW staging); x = reported / "
          "ideal (the union of written\npages rounded to the block size); 1.00 is exact; ok = every written page "
          "reported.")


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,20", help="volume sizes in GiB, comma-separated (default 1,20)")
    p.add_argument("--written", default="1", help="random data written per volume, GiB or 512m (default 1)")
    p.add_argument("--overwrite", default="64m", help="bytes overwritten between s1 and s2 (default 64m)")
    p.add_argument("--state", type=Path, default=None, help="emulator state folder (default: a temp folder)")
    p.add_argument("--block-size", type=int, default=65536, help="diff block_size in bytes (default 65536)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per size; medians are reported (default 3)")
    p.add_argument("--seed", type=int, default=1, help="PRNG seed for data and offsets")
    p.add_argument("--settle", type=float, default=0.25,
                   help="idle seconds before each timed REST call (default 0.25; 0 = back to back, which adds "
                        "~40 ms per call: see docs/emulator.md)")
    p.add_argument("--hint-sweep", action="store_true", help="also sweep the XFS extent-size hint")
    p.add_argument("--hints", default="0,4k,64k,256k,1m", help="hints for --hint-sweep (0 = no hint)")
    p.add_argument("--sweep-size", default=None, help="file size for --hint-sweep (default: the largest of --sizes)")
    p.add_argument("--generations", type=int, default=3, help="snapshot generations in --hint-sweep")
    p.add_argument("--churn", default="16m", help="8 KiB page writes per generation in --hint-sweep (default 16m)")
    p.add_argument("--skip-rest", action="store_true", help="run only --hint-sweep")
    args = p.parse_args(argv)
    sizes = [parse_bytes(s, GiB) for s in args.sizes.split(",") if s.strip()]
    args.written = parse_bytes(args.written, GiB)
    args.overwrite = parse_bytes(args.overwrite, MiB)
    args.churn = parse_bytes(args.churn, MiB)
    args.hints = [parse_bytes(h) for h in args.hints.split(",") if h.strip()]
    if args.block_size <= 0 or args.block_size % 512:
        p.error("--block-size must be a positive multiple of 512")
    if os.geteuid() != 0:
        p.error("needs root: connected volumes are loop devices and the pool is XFS on a loop device")

    from copydata.emulator import service

    own_state = args.state is None
    state = Path(tempfile.mkdtemp(prefix="copydata-bench-")) if own_state else args.state.resolve()
    if service.read_endpoint(state):
        p.error(f"an emulator already runs for {state}; give another --state")
    rows: list[dict] = []
    sweep: list[dict] = []
    api = None
    try:
        log(f"starting emulator in {state}")
        info = service.start_detached(state, "127.0.0.1", 0, [])
        if not info.get("reflink"):
            log("WARNING: the pool cannot reflink: snapshots are full copies and diffs hash data")
        log(f"emulator at {info['target']}, pool {info['pool']} (reflink={info['reflink']})")
        api = Api(info, args.settle)
        rtt = round_trip(api)
        tag = f"bench{os.getpid()}"
        if not args.skip_rest:
            for size in sizes:
                rows.append(bench_size(api, info, size, args, random.Random(args.seed), tag))
        if args.hint_sweep:
            sweep_size = parse_bytes(args.sweep_size, GiB) if args.sweep_size else max(sizes)
            sweep = hint_sweep(info, sweep_size, args, args.seed)
    finally:
        if api:
            api.close()
        log("stopping emulator")
        service.stop(state)
        if own_state:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(state)
    if rows:
        from copydata.emulator.pool import DEFAULT_EXTENT_HINT
        print_table(rows, args, rtt, DEFAULT_EXTENT_HINT)
    if sweep:
        print_sweep(sweep, args, parse_bytes(args.sweep_size, GiB) if args.sweep_size else max(sizes))
    return 0 if all(all(r["covered"]) and all(r["verified"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
