#!/usr/bin/env python3
"""Checks vkaccum's TensorBoard event files and prints what they hold.

    tools/tb_check.py RUN | DIR | FILE

RUN is a run folder (its tb/ is read), DIR a folder of event files, FILE one of them.
Every record of every file (names holding "tfevents", in name order) is walked with this
script's own CRC-32C: the length and data CRCs must match and nothing may be left over.
Each event is then parsed by protobuf, and must hold no field the parser does not know,
re-serialize to the very bytes read (vkaccum writes canonical proto3), and the file must
open with file_version "brain.Event:2" and hold no other. Printed: per file its events,
then per tag the steps, wall times and values of scalars, or the steps, sizes and PNG
sizes of images (each PNG's signature and IHDR are checked against the stored size).
Exit status 0 when every check passed, 1 otherwise.

Which parser, in order:
  1. The `tensorboard` package, when it imports (tbparse needs it too, so this covers
     tbparse): its own compiled tensorboard.compat.proto.event_pb2, and then its
     EventAccumulator loads the same folder as `tensorboard --logdir` would and must give
     the same scalars and images.
  2. Otherwise tools/tb/event.proto (TensorBoard's field names and numbers, only the
     fields vkaccum writes) compiled at run time with protoc into a temporary folder and
     parsed with the protobuf Python package: on Debian, `apt-get install -y
     protobuf-compiler python3-protobuf`. This is the path taken where vkaccum was
     developed: neither tensorboard nor tbparse can be installed there (no PyPI).
The first line printed names the path taken. When the python3 first on PATH lacks the
protobuf package and /usr/bin/python3 (Debian's, with python3-protobuf) is another
interpreter, the script runs itself again under that one.
"""
import importlib
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

FILE_VERSION = "brain.Event:2"
PNG_SIG = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: (1,), 2: (3,), 3: (3, 4), 4: (2,), 6: (4,)}  # by colour type


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def records(blob):
    """Yields each record's data; raises ValueError naming the record that is wrong."""
    pos, k = 0, 0
    while pos < len(blob):
        if len(blob) - pos < 12:
            raise ValueError(f"record {k} at byte {pos}: cut in its header")
        (n,) = struct.unpack_from("<Q", blob, pos)
        (hcrc,) = struct.unpack_from("<I", blob, pos + 8)
        if hcrc != masked(crc32c(blob[pos:pos + 8])):
            raise ValueError(f"record {k} at byte {pos}: length CRC mismatch")
        if len(blob) - pos - 12 < n + 4:
            raise ValueError(f"record {k} at byte {pos}: cut in its {n} bytes of data")
        data = blob[pos + 12:pos + 12 + n]
        (dcrc,) = struct.unpack_from("<I", blob, pos + 12 + n)
        if dcrc != masked(crc32c(data)):
            raise ValueError(f"record {k} at byte {pos}: data CRC mismatch")
        yield data
        pos += 12 + n + 4
        k += 1


def load_protos():
    """Returns (Event class, description of the path taken, tensorboard or None)."""
    try:
        tensorboard = importlib.import_module("tensorboard")
        from tensorboard.compat.proto import event_pb2
        return event_pb2.Event, f"tensorboard {tensorboard.__version__} (its event_pb2 " \
            "and EventAccumulator)", tensorboard
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    protoc = shutil.which("protoc")
    if not protoc:
        sys.exit("tb_check: neither the tensorboard package nor protoc: "
                 "apt-get install -y protobuf-compiler python3-protobuf")
    out = tempfile.mkdtemp(prefix="tb_check_")
    try:
        subprocess.run([protoc, f"-I{here}/tb", f"--python_out={out}",
                        f"{here}/tb/event.proto"], check=True)
        sys.path.insert(0, out)
        event_pb2 = importlib.import_module("event_pb2")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    import google.protobuf
    return event_pb2.Event, f"tools/tb/event.proto compiled by protoc, protobuf " \
        f"{google.protobuf.__version__}", None


def png_check(png, w, h, c):
    if len(png) < 29 or png[:8] != PNG_SIG or png[12:16] != b"IHDR":
        return "not a PNG"
    pw, ph = struct.unpack_from(">II", png, 16)
    ctype = png[25]
    if (pw, ph) != (w, h) or c not in PNG_CHANNELS.get(ctype, ()):
        return f"the PNG is {pw}x{ph} of colour type {ctype}, stored as {w}x{h}x{c}"
    return None


def event_files(arg):
    if os.path.isfile(arg):
        return os.path.dirname(arg) or ".", [arg]
    folder = os.path.join(arg, "tb") if os.path.isdir(os.path.join(arg, "tb")) else arg
    names = sorted(n for n in os.listdir(folder) if "tfevents" in n)
    return folder, [os.path.join(folder, n) for n in names]


def fmt_value(v):
    return repr(v) if math.isnan(v) or math.isinf(v) else f"{v:.9g}"


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit("usage: tools/tb_check.py RUN|DIR|FILE (see the top of this file)")
    Event, how, tensorboard = load_protos()
    from google.protobuf.message import DecodeError
    print(f"parser: {how}")
    folder, paths = event_files(sys.argv[1])
    if not paths:
        sys.exit(f"tb_check: {folder}: no event files (names holding 'tfevents')")
    errors = 0
    scalars, images = {}, {}  # tag -> [(step, wall_time, ...)]

    def fail(msg):
        nonlocal errors
        errors += 1
        print(f"  FAIL {msg}")

    for path in paths:
        with open(path, "rb") as f:
            blob = f.read()
        print(f"{path}: {len(blob)} bytes")
        count = 0
        try:
            for k, data in enumerate(records(blob)):
                count += 1
                ev = Event.FromString(data)
                bare = Event()
                bare.CopyFrom(ev)
                bare.DiscardUnknownFields()
                if bare.ByteSize() != ev.ByteSize():
                    fail(f"record {k}: fields unknown to the parser")
                if ev.SerializeToString() != data:
                    fail(f"record {k}: not protobuf's canonical encoding of its fields")
                what = ev.WhichOneof("what")
                if (k == 0) != (what == "file_version"):
                    fail(f"record {k}: file_version must be the first event, and only it")
                if what == "file_version":
                    if ev.file_version != FILE_VERSION:
                        fail(f"file_version {ev.file_version!r}, not {FILE_VERSION!r}")
                    continue
                if what != "summary":
                    fail(f"record {k}: an event of {what}")
                    continue
                for v in ev.summary.value:
                    kind = v.WhichOneof("value")
                    if kind == "simple_value":
                        scalars.setdefault(v.tag, []).append(
                            (ev.step, ev.wall_time, v.simple_value))
                    elif kind == "image":
                        im = v.image
                        bad = png_check(im.encoded_image_string, im.width, im.height,
                                        im.colorspace)
                        if bad:
                            fail(f"record {k}: image {v.tag!r}: {bad}")
                        images.setdefault(v.tag, []).append(
                            (ev.step, ev.wall_time, im.width, im.height, im.colorspace,
                             im.encoded_image_string))
                    else:
                        fail(f"record {k}: value {v.tag!r} of kind {kind}")
        except (ValueError, DecodeError) as e:  # the framing, or an event protobuf refuses
            fail(f"{path}: record {count - 1}: {e}" if isinstance(e, DecodeError) else f"{path}: {e}")
        print(f"  records: {count}, CRCs checked")

    for tag in sorted(scalars):
        pts = scalars[tag]
        print(f"scalar {tag}: {len(pts)} points")
        for step, wall, value in pts:
            print(f"  step {step:>8}  wall_time {wall!r}  value {fmt_value(value)}")
    for tag in sorted(images):
        ims = images[tag]
        print(f"image {tag}: {len(ims)} images")
        for step, wall, w, h, c, png in ims:
            print(f"  step {step:>8}  wall_time {wall!r}  {w}x{h}x{c}  PNG {len(png)} bytes")

    if tensorboard is not None:
        from tensorboard.backend.event_processing import event_accumulator as ea_mod
        # everything kept, and no purge: TensorBoard drops a tag's points past a step
        # that goes backwards (a restart), which is not what is checked here
        acc = ea_mod.EventAccumulator(folder, ea_mod.STORE_EVERYTHING_SIZE_GUIDANCE,
                                      purge_orphaned_data=False).Reload()
        tags = acc.Tags()
        for tag in scalars:
            got = [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] \
                if tag in tags.get("scalars", []) else []
            want = scalars[tag]
            same = len(got) == len(want) and all(
                g[:2] == w[:2] and (g[2] == w[2] or (math.isnan(g[2]) and math.isnan(w[2])))
                for g, w in zip(got, want))
            if not same:
                fail(f"EventAccumulator: scalar {tag!r} differs: {got[:3]}...")
        for tag in images:
            got = [(e.step, e.wall_time, e.width, e.height, e.encoded_image_string)
                   for e in acc.Images(tag)] if tag in tags.get("images", []) else []
            want = [(s, t, w, h, png) for s, t, w, h, _, png in images[tag]]
            if got != want:
                fail(f"EventAccumulator: image {tag!r} differs")
        print(f"EventAccumulator: {len(scalars)} scalar and {len(images)} image tags compared")

    print(f"{'FAILED: ' + str(errors) + ' errors' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        importlib.import_module("google.protobuf")
    except ImportError:
        debian = "/usr/bin/python3"
        if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian) \
                and not os.environ.get("TB_CHECK_REEXEC"):
            os.environ["TB_CHECK_REEXEC"] = "1"
            os.execv(debian, [debian] + sys.argv)
        sys.exit("tb_check: no protobuf package for this python3: "
                 "apt-get install -y python3-protobuf")
    sys.exit(main())
