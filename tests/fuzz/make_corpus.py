#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (docs/fuzz.md) into tests/fuzz/corpus/TARGET/:
small valid files of every format and variant the readers take, and a few near-valid ones
(truncated, one field wrong). Standard library only, deterministic: running it again
rewrites the same bytes. The files are committed; run it after changing it:

    python3 tests/fuzz/make_corpus.py

image        PNG (every colour type, 1/8/16 bits, every filter, Adam7, an empty IDAT),
             baseline JPEG (grey, YCbCr 4:4:4 and 4:2:0, restart markers), progressive
             JPEG (DC scan), BMP (1/4/8/16/24/32 bits, core/info/V4 headers, top-down,
             RLE8), TGA (true colour, grey, colour-mapped, RLE, 16 bits, image id)
mask         grey and indexed PNG class-id masks (1/2/4/8 bits), RGB/RGBA colour masks,
             and masks the reader refuses (16 bits, grey+alpha, a JPEG)
palette      palette JSON: a list, an object with "ignore", 256 classes, bad entries
idx          IDX plain and .gz: (N,H,W), (N,H,W,3), labels, two gzip members, truncated,
             trailing data, a wrong type
safetensors  the layout of src/safetensors.c's writer (with its crc32), of st.py's
             pattern (every dtype), unaligned offsets, empty, near-valid ones
config       the config.json of `vkaccum seg train` with every option (names checked
             against src/cli/seg_opts.c), and near-valid ones
"""
import gzip
import json
import os
import re
import shutil
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
OUT = os.path.join(ROOT, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def voc(k):
    """Pascal VOC's colour map entry k."""
    r = g = b = 0
    for i in range(8):
        r |= ((k >> 0) & 1) << (7 - i)
        g |= ((k >> 1) & 1) << (7 - i)
        b |= ((k >> 2) & 1) << (7 - i)
        k >>= 3
    return r, g, b


def pix(w, h, c, seed):
    """Deterministic bytes: w * h * c of them."""
    return bytes((x * 37 + y * 91 + k * 53 + seed * 17) & 255
                 for y in range(h) for x in range(w) for k in range(c))


# ---- PNG ---------------------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filt(rows, bpp, first_filter=0):
    """Filters rows (lists of bytes), cycling through the five filter types."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, r in enumerate(rows):
        ft = (first_filter + i) % 5
        f = bytearray()
        for x, v in enumerate(r):
            a = r[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = (0, a, b, (a + b) >> 1, paeth(a, b, c))[ft]
            f.append((v - pred) & 255)
        out += bytes([ft]) + f
        prev = r
    return bytes(out)


def pack_rows(samples, w, h, ch, depth):
    """Rows of packed samples (depth 1/2/4/8/16)."""
    rows = []
    for y in range(h):
        s = samples[y * w * ch:(y + 1) * w * ch]
        if depth == 8:
            rows.append(bytes(s))
        elif depth == 16:
            rows.append(b"".join(struct.pack(">H", v) for v in s))
        else:
            bits, acc, n = bytearray(), 0, 0
            for v in s:
                acc = acc << depth | (v & ((1 << depth) - 1))
                n += depth
                if n == 8:
                    bits.append(acc)
                    acc = n = 0
            if n:
                bits.append(acc << (8 - n))
            rows.append(bytes(bits))
    return rows


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png(w, h, ctype, depth, samples, plte=None, trns=None, interlace=False, extra=b""):
    ch = CHANNELS[ctype]
    bpp = max(1, ch * depth // 8)
    if not interlace:
        raw = filt(pack_rows(samples, w, h, ch, depth), bpp)
    else:
        raw = b""
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        for p, (x0, y0, dx, dy) in enumerate(passes):
            xs, ys = range(x0, w, dx), range(y0, h, dy)
            if not xs or not ys:
                continue
            sub = [samples[(y * w + x) * ch + k] for y in ys for x in xs for k in range(ch)]
            raw += filt(pack_rows(sub, len(xs), len(ys), ch, depth), bpp, p)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0,
                                                            1 if interlace else 0))
    if plte:
        out += chunk(b"PLTE", bytes(v for c in plte for v in c))
    if trns:
        out += chunk(b"tRNS", trns)
    out += extra
    z = zlib.compress(raw, 9)
    # two IDAT chunks: the decoder must join them
    out += chunk(b"IDAT", z[:len(z) // 2]) + chunk(b"IDAT", z[len(z) // 2:])
    return out + chunk(b"IEND", b"")


# ---- JPEG --------------------------------------------------------------------------

class Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, code, length):
        for i in range(length - 1, -1, -1):
            self.acc = self.acc << 1 | ((code >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc = self.n = 0

    def flush(self):
        while self.n:
            self.put(1, 1)


DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def dc_codes():
    codes, code, k = [], 0, 0
    for length in range(1, 17):
        for _ in range(DC_BITS[length - 1]):
            codes.append((code, length))
            code += 1
            k += 1
        code <<= 1
    return codes


def jpeg(w, h, comps, levels, sub420=False, progressive=False, restart=0, trunc=False):
    """Flat 8x8 blocks (only a DC coefficient, quantiser 1), as tests/datasets_files.c's
    flat_jpeg: levels(comp, bx, by) is the level of a block. sub420: Y sampled 2x2."""
    codes = dc_codes()
    o = bytearray(b"\xff\xd8")
    o += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    o += b"\xff\xdb\x00\x43\x00" + bytes([1] * 64)
    samp = [0x22 if (sub420 and k == 0) else 0x11 for k in range(comps)]
    o += bytes([0xFF, 0xC2 if progressive else 0xC0]) + struct.pack(">HBHHB", 8 + 3 * comps, 8,
                                                                       h, w, comps)
    for k in range(comps):
        o += bytes([k + 1, samp[k], 0])
    o += b"\xff\xc4" + struct.pack(">H", 3 + 16 + 12) + b"\x00" + bytes(DC_BITS) + bytes(range(12))
    if not progressive:  # one AC code: "0" = EOB
        o += b"\xff\xc4" + struct.pack(">H", 3 + 16 + 1) + b"\x10" + bytes([1] + [0] * 15) + b"\x00"
    if restart:
        o += b"\xff\xdd" + struct.pack(">HH", 4, restart)
    o += b"\xff\xda" + struct.pack(">HB", 6 + 2 * comps, comps)
    for k in range(comps):
        o += bytes([k + 1, 0x00])
    o += bytes([0, 0 if progressive else 63, 0])
    mcu = 16 if sub420 else 8
    mw, mh = (w + mcu - 1) // mcu, (h + mcu - 1) // mcu
    bits = Bits()
    pred = [0] * comps
    rst = 0

    def block(k, bx, by):
        dc = 8 * (levels(k, bx, by) - 128)
        diff = dc - pred[k]
        pred[k] = dc
        cat = abs(diff).bit_length()
        bits.put(*codes[cat])
        if cat:
            bits.put(diff if diff >= 0 else diff + (1 << cat) - 1, cat)
        if not progressive:
            bits.put(0, 1)

    for m in range(mw * mh):
        if restart and m and m % restart == 0:
            bits.flush()
            bits.out += bytes([0xFF, 0xD0 + rst % 8])
            rst += 1
            pred = [0] * comps
        mx, my = m % mw, m // mw
        for k in range(comps):
            n = 2 if samp[k] == 0x22 else 1
            for v in range(n):
                for u in range(n):
                    block(k, mx * n + u, my * n + v)
    bits.flush()
    o += bits.out
    if trunc:
        return bytes(o[:len(o) * 2 // 3])
    return bytes(o) + b"\xff\xd9"


# ---- BMP ---------------------------------------------------------------------------

def bmp(w, h, bpp, px, palette=None, header=40, top_down=False, masks=None, comp=None,
        data=None):
    """px: rows top to bottom of pixel values (ints for palette images, (r,g,b[,a]))."""
    if data is None:
        rows = []
        for y in range(h):
            r = px[y]
            if bpp in (1, 4, 8):
                bits, acc, n = bytearray(), 0, 0
                for v in r:
                    acc = acc << bpp | v
                    n += bpp
                    if n == 8:
                        bits.append(acc)
                        acc = n = 0
                if n:
                    bits.append(acc << (8 - n))
                row = bytes(bits)
            elif bpp == 16:
                row = b"".join(struct.pack("<H", (c[0] >> 3) << 11 | (c[1] >> 2) << 5 | c[2] >> 3)
                               for c in r)
            elif bpp == 24:
                row = b"".join(bytes((c[2], c[1], c[0])) for c in r)
            else:
                row = b"".join(bytes((c[2], c[1], c[0], c[3] if len(c) > 3 else 255)) for c in r)
            rows.append(row + bytes(-len(row) % 4))
        if not top_down:
            rows.reverse()
        data = b"".join(rows)
    if comp is None:
        comp = 3 if masks else 0
    pal = b"".join(bytes((c[2], c[1], c[0], 0)) for c in palette) if palette else b""
    if header == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bpp)
        pal = b"".join(bytes((c[2], c[1], c[0])) for c in palette) if palette else b""
        extra = b""
    else:
        info = struct.pack("<IiiHHIIiiII", header, w, -h if top_down else h, 1, bpp, comp,
                           len(data), 2835, 2835, len(palette) if palette else 0, 0)
        extra = b""
        if header == 40 and masks:
            extra = struct.pack("<III", *masks[:3])
        elif header >= 108:
            m = list(masks or (0, 0, 0, 0)) + [0] * 4
            extra = struct.pack("<IIII", *m[:4]) + b"sRGB" + bytes(36 + 12) + bytes(header - 108)
    off = 14 + len(info) + len(extra) + len(pal)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + extra + pal + data


# ---- TGA ---------------------------------------------------------------------------

def tga(w, h, kind, bpp, pixels, cmap=None, image_id=b"", top_left=False, rle=False):
    """pixels: bytes already in the file's pixel order and format (BGR[A], grey, index)."""
    cmap_type = 1 if cmap else 0
    cmap_len = len(cmap) // 3 if cmap else 0
    desc = (0x20 if top_left else 0) | (8 if bpp == 32 else 0)
    head = struct.pack("<BBBHHBHHHHBB", len(image_id), cmap_type, kind, 0, cmap_len,
                       24 if cmap else 0, 0, 0, w, h, bpp, desc)
    body = pixels
    if rle:
        ps = (bpp + 7) // 8
        out, i, n = bytearray(), 0, len(pixels) // ps
        while i < n:
            p = pixels[i * ps:(i + 1) * ps]
            run = 1
            while i + run < n and run < 128 and pixels[(i + run) * ps:(i + run + 1) * ps] == p:
                run += 1
            if run > 1:
                out += bytes([0x80 | (run - 1)]) + p
                i += run
            else:
                j = i + 1
                while (j < n and j - i < 128 and
                       pixels[j * ps:(j + 1) * ps] != pixels[(j - 1) * ps:j * ps]):
                    j += 1
                out += bytes([j - i - 1]) + pixels[i * ps:j * ps]
                i = j
        body = bytes(out)
    return head + image_id + (cmap or b"") + body


# ---- targets -----------------------------------------------------------------------

def images():
    t = "image"
    put(t, "png_rgb_8x6.png", png(8, 6, 2, 8, pix(8, 6, 3, 1)))
    put(t, "png_grey_5x3.png", png(5, 3, 0, 8, pix(5, 3, 1, 2)))
    put(t, "png_grey16_4x4.png", png(4, 4, 0, 16, [v * 257 for v in pix(4, 4, 1, 3)]))
    put(t, "png_rgba_3x3.png", png(3, 3, 6, 8, pix(3, 3, 4, 4)))
    put(t, "png_ga_2x2.png", png(2, 2, 4, 8, pix(2, 2, 2, 5)))
    put(t, "png_rgb16_2x2.png", png(2, 2, 2, 16, [v * 257 for v in pix(2, 2, 3, 6)]))
    put(t, "png_pal_4x4.png", png(4, 4, 3, 8, [v % 6 for v in pix(4, 4, 1, 7)],
                                  plte=[voc(k) for k in range(6)], trns=bytes([0, 128])))
    put(t, "png_pal4_5x2.png", png(5, 2, 3, 4, [v % 16 for v in pix(5, 2, 1, 8)],
                                   plte=[voc(k) for k in range(16)]))
    put(t, "png_grey1_9x2.png", png(9, 2, 0, 1, [v & 1 for v in pix(9, 2, 1, 9)]))
    put(t, "png_grey2_3x3.png", png(3, 3, 0, 2, [v & 3 for v in pix(3, 3, 1, 10)]))
    put(t, "png_adam7_9x9.png", png(9, 9, 2, 8, pix(9, 9, 3, 11), interlace=True))
    put(t, "png_text_2x1.png", png(2, 1, 0, 8, b"\x10\x20",
                                   extra=chunk(b"tEXt", b"Comment\x00vkaccum fuzz") +
                                   chunk(b"gAMA", struct.pack(">I", 45455))))
    full = png(6, 4, 2, 8, pix(6, 4, 3, 12))
    put(t, "png_no_iend.png", full[:-12])
    put(t, "png_short_idat.png", full[:60] + chunk(b"IEND", b""))
    # an empty IDAT before the data: valid, and stb_image 2.27 offsets a null pointer for it
    put(t, "png_empty_idat_6x4.png", full[:33] + chunk(b"IDAT", b"") + full[33:])

    def lv(k, bx, by):
        return (bx * 70 + by * 40 + k * 90 + 30) & 255

    put(t, "jpeg_grey_16x8.jpg", jpeg(16, 8, 1, lv))
    put(t, "jpeg_ycc_16x16.jpg", jpeg(16, 16, 3, lv))
    put(t, "jpeg_ycc420_24x20.jpg", jpeg(24, 20, 3, lv, sub420=True))
    put(t, "jpeg_prog_dc_16x8.jpg", jpeg(16, 8, 3, lv, progressive=True))
    put(t, "jpeg_restart_32x8.jpg", jpeg(32, 8, 1, lv, restart=2))
    put(t, "jpeg_truncated_16x16.jpg", jpeg(16, 16, 3, lv, trunc=True))

    rgb = [[tuple(pix(1, 1, 4, x * 7 + y * 3)) for x in range(5)] for y in range(3)]
    put(t, "bmp_24_5x3.bmp", bmp(5, 3, 24, rgb))
    put(t, "bmp_24_topdown_5x3.bmp", bmp(5, 3, 24, rgb, top_down=True))
    put(t, "bmp_32_v4_5x3.bmp", bmp(5, 3, 32, rgb, header=108,
                                    masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)))
    put(t, "bmp_32_5x3.bmp", bmp(5, 3, 32, rgb))
    put(t, "bmp_16_565_5x3.bmp", bmp(5, 3, 16, rgb, masks=(0xF800, 0x7E0, 0x1F)))
    put(t, "bmp_core_24_5x3.bmp", bmp(5, 3, 24, rgb, header=12))
    idx8 = [[(x + 2 * y) % 5 for x in range(6)] for y in range(2)]
    put(t, "bmp_8_6x2.bmp", bmp(6, 2, 8, idx8, palette=[voc(k) for k in range(5)]))
    idx4 = [[(x * 3 + y) % 16 for x in range(7)] for y in range(3)]
    put(t, "bmp_4_7x3.bmp", bmp(7, 3, 4, idx4, palette=[voc(k) for k in range(16)]))
    idx1 = [[(x + y) & 1 for x in range(9)] for y in range(2)]
    put(t, "bmp_1_9x2.bmp", bmp(9, 2, 1, idx1, palette=[(0, 0, 0), (255, 255, 255)]))
    put(t, "bmp_rle8_4x2.bmp", bmp(4, 2, 8, None, palette=[voc(k) for k in range(4)], comp=1,
                                   data=bytes([4, 1, 0, 0, 2, 2, 2, 3, 0, 1])))
    put(t, "bmp_truncated_5x3.bmp", bmp(5, 3, 24, rgb)[:-7])

    px = pix(4, 3, 3, 13)
    put(t, "tga_24_4x3.tga", tga(4, 3, 2, 24, px))
    put(t, "tga_32_top_3x2.tga", tga(3, 2, 2, 32, pix(3, 2, 4, 14), top_left=True))
    put(t, "tga_grey_5x2.tga", tga(5, 2, 3, 8, pix(5, 2, 1, 15), image_id=b"vkaccum"))
    put(t, "tga_16_3x2.tga", tga(3, 2, 2, 16, pix(3, 2, 2, 16)))
    runs = bytes([10, 20, 30] * 5 + [40, 50, 60, 70, 80, 90] + [1, 2, 3])
    put(t, "tga_rle24_4x2.tga", tga(4, 2, 10, 24, runs[:24], rle=True))
    put(t, "tga_rle_grey_6x2.tga", tga(6, 2, 11, 8, bytes([9] * 7 + [1, 2, 3, 4, 5]), rle=True))
    cmap = b"".join(bytes(voc(k)[::-1]) for k in range(4))
    put(t, "tga_cmap_4x2.tga", tga(4, 2, 1, 8, bytes([0, 1, 2, 3, 3, 2, 1, 0]), cmap=cmap))
    put(t, "tga_truncated_4x3.tga", tga(4, 3, 2, 24, px)[:-5])


def masks():
    t = "mask"
    ids = [(x + y) % 4 if (x * y) % 7 else 255 for y in range(4) for x in range(6)]
    put(t, "grey_ids_6x4.png", png(6, 4, 0, 8, ids))
    put(t, "indexed_voc_5x5.png", png(5, 5, 3, 8, [(x * y) % 21 for y in range(5) for x in range(5)],
                                      plte=[voc(k) for k in range(21)]))
    put(t, "grey1_10x2.png", png(10, 2, 0, 1, [(x + y) & 1 for y in range(2) for x in range(10)]))
    put(t, "grey2_5x3.png", png(5, 3, 0, 2, [(x + y) & 3 for y in range(3) for x in range(5)]))
    put(t, "grey4_3x3.png", png(3, 3, 0, 4, [(x * 5 + y) & 15 for y in range(3) for x in range(3)]))
    put(t, "grey_adam7_9x9.png", png(9, 9, 0, 8, [(x + y) % 3 for y in range(9) for x in range(9)],
                                     interlace=True))
    rgb = [v for y in range(4) for x in range(4) for v in voc((x + 2 * y) % 21)]
    put(t, "rgb_voc_4x4.png", png(4, 4, 2, 8, rgb))
    put(t, "rgb_ignore_2x2.png", png(2, 2, 2, 8, [224, 224, 192, 0, 0, 0, 128, 0, 0, 224, 224, 192]))
    rgba = [v for y in range(3) for x in range(3) for v in voc((x + y) % 21) + (255,)]
    put(t, "rgba_voc_3x3.png", png(3, 3, 6, 8, rgba))
    put(t, "grey16_2x2.png", png(2, 2, 0, 16, [0, 1, 2, 3]))
    put(t, "grey_alpha_2x2.png", png(2, 2, 4, 8, [0, 255, 1, 255, 2, 255, 3, 255]))
    put(t, "indexed_pal4_4x2.png", png(4, 2, 3, 4, [0, 1, 2, 3, 4, 5, 6, 7],
                                       plte=[voc(k) for k in range(8)]))
    put(t, "not_png.jpg", jpeg(8, 8, 1, lambda k, bx, by: 0))


def palettes():
    t = "palette"
    put(t, "voc21_list.json", json.dumps([list(voc(k)) for k in range(21)]).encode())
    put(t, "classes_ignore.json", json.dumps({"classes": [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
                                              "ignore": [[255, 255, 255]]}, indent=2).encode())
    put(t, "one.json", b"[[0, 0, 0]]\n")
    put(t, "voc256.json", json.dumps([list(voc(k)) for k in range(256)]).encode())
    put(t, "dup_colour.json", b"[[1, 2, 3], [4, 5, 6], [1, 2, 3]]")
    put(t, "bad_entry.json", b'[[0, 0, 0], [1.5, 2, 3], [0, 0, "x"], [300, 0, 0]]')
    put(t, "ignore_only.json", b'{"classes": [], "ignore": [[0, 0, 0]]}')
    put(t, "not_list.json", b'{"colours": [[0, 0, 0]]}')


def idx_files():
    t = "idx"

    def idx(dims, data, kind=8):
        return bytes([0, 0, kind, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data

    def gz(b):
        return gzip.compress(b, compresslevel=9, mtime=0)

    imgs = idx([3, 4, 5], pix(5, 4, 3, 20))
    put(t, "images_3x4x5.idx", imgs)
    put(t, "images_3x4x5.idx.gz", gz(imgs))
    put(t, "rgb_2x3x3x3.idx.gz", gz(idx([2, 3, 3, 3], pix(3, 3, 6, 21))))
    put(t, "labels_10.idx.gz", gz(idx([10], bytes(range(10)))))
    put(t, "zeros_64x16x16.idx.gz", gz(idx([64, 16, 16], bytes(64 * 256))))
    half = len(imgs) // 2
    put(t, "two_members.idx.gz", gz(imgs[:half]) + gz(imgs[half:]))
    put(t, "truncated.idx.gz", gz(imgs)[:-12])
    put(t, "trailing.idx", imgs + b"\x00")
    put(t, "float_type.idx", idx([2, 2], bytes(16), kind=0x0D))
    put(t, "dims5.idx", idx([1, 1, 1, 1, 1], b"\x00"))


def st_file(tensors, meta=None, crc=False, pad=True, order=None):
    """tensors: [(name, dtype, shape, bytes)] in data order (the order given)."""
    header = {}
    if meta is not None or crc:
        m = dict(meta or {})
        data = b"".join(x[3] for x in tensors)
        if crc:
            m["vkaccum.crc32"] = "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
        header["__metadata__"] = m
    off = 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if pad:
        js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(x[3] for x in tensors)


SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4,
         "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def safetensors():
    t = "safetensors"
    f32 = lambda vals: b"".join(struct.pack("<f", v) for v in vals)
    conv = ("enc.0.conv.weight", "F32", [2, 1, 3, 3], f32([i * 0.125 - 1 for i in range(18)]))
    bias = ("enc.0.conv.bias", "F32", [2], f32([0.5, -0.5]))
    nbt = ("enc.0.norm.num_batches_tracked", "I64", [], struct.pack("<q", 7))
    put(t, "vka_writer_crc.safetensors",
        st_file([nbt, conv, bias], meta={"vkaccum.step": "12", "format": "pt"}, crc=True))
    put(t, "no_meta.safetensors", st_file([conv, bias]))
    # st.py's "pattern": one tensor per dtype, shapes including a scalar and 0 elements,
    # stored largest element size first
    shapes = [[2, 3, 5], [], [0], [7], [3, 0, 2], [4, 1, 3, 2]]
    ents = []
    for k, dt in enumerate(SIZES):
        shape = shapes[k % len(shapes)]
        n = 1
        for d in shape:
            n *= d
        ents.append((f"p.{dt.lower()}", dt, shape, bytes((i % 7) for i in range(n * SIZES[dt]))))
    ents.sort(key=lambda e: -SIZES[e[1]])
    put(t, "pattern_all_dtypes.safetensors",
        st_file(ents, meta={"writer": "st.py", "note": "\u00fcn\u00efcode \u2713"}))
    put(t, "unaligned.safetensors",
        st_file([("a", "U8", [3], b"\x01\x02\x03"), ("b", "F32", [2], f32([1.0, 2.0]))],
                pad=False))
    put(t, "empty.safetensors", st_file([]))
    put(t, "meta_only.safetensors", st_file([], meta={"k": "v"}))
    good = st_file([conv, bias], crc=True)
    put(t, "bad_crc.safetensors", good[:-1] + bytes([good[-1] ^ 1]))
    put(t, "truncated.safetensors", good[:-5])
    hdr = (b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
           b'"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}')
    put(t, "overlap.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\x00" * 3)


SEG_DEFAULTS = {
    "data": "shapes", "out": "runs/shapes", "palette": "", "reduce-zero-label": False,
    "classes": 4, "batch": 8, "micro-batch": 4, "recompute": "auto", "plan": False,
    "accum": 0, "accumulate": "auto", "crop": 32, "steps": 1500, "epochs": 0, "lr": 0.002,
    "optimizer": "adamw", "weight-decay": 0.0001, "momentum": 0.9, "schedule": "poly",
    "warmup": 0, "clip-norm": 0, "eval-every": 250, "save-every": 100, "resume": "",
    "load-from": "", "seed": 0, "device": "", "depth": 3, "width": 16, "norm": "group",
    "groups": 8, "up": "convT", "ignore-index": 255, "class-weights": "auto",
    "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "workers": 2,
    "no-augment": False, "scale-min": 0.75, "scale-max": 1.25, "color-jitter": 0.2,
    "train-count": 0, "val-count": 0, "tile": 0, "skip-bad": False, "drop-last": False,
    "detect-anomaly": False, "profile": False, "profile-layers": False, "mem-budget": 0,
    "dump-grads": "", "json": False, "logits": False, "tensorboard": False,
}


def cjson_print(d):
    """cJSON_Print's layout: tabs, "key":<TAB>value."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        return repr(v) if isinstance(v, float) else str(v)
    return "{\n" + ",\n".join(f'\t"{k}":\t{val(v)}' for k, v in d.items()) + "\n}"


def configs():
    t = "config"
    src = open(os.path.join(REPO, "src", "cli", "seg_opts.c"), encoding="utf-8").read()
    names = re.findall(r'^\s*O\("([^"]+)", OPT_', src, re.M)
    if names != list(SEG_DEFAULTS):
        sys.exit("make_corpus.py: SEG_DEFAULTS no longer matches the table of "
                 "src/cli/seg_opts.c: " + " ".join(sorted(set(names) ^ set(SEG_DEFAULTS))))
    put(t, "seg_train.json", cjson_print(SEG_DEFAULTS).encode())
    other = dict(SEG_DEFAULTS, data="voc:/data/VOC2012", optimizer="sgd", schedule="cosine",
                 norm="batch", up="bilinear", accum=2, **{"micro-batch": 0, "seed": 12345678901,
                                                          "class-weights": "1,2.5,0.25",
                                                          "skip-bad": True, "lr": 1e-05})
    put(t, "seg_train_sgd.json", json.dumps(other, separators=(",", ":")).encode())
    missing = dict(SEG_DEFAULTS)
    del missing["tile"]
    put(t, "missing_key.json", cjson_print(missing).encode())
    put(t, "unknown_key.json", cjson_print(dict(SEG_DEFAULTS, extra=1)).encode())
    put(t, "bad_choice.json", cjson_print(dict(SEG_DEFAULTS, optimizer="lion")).encode())
    put(t, "bad_types.json", cjson_print(dict(SEG_DEFAULTS, batch=2.5, crop="32")).encode())
    put(t, "nul.json", b'{"data": "sha\x00pes"}')
    put(t, "list.json", b"[1, 2, 3]")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    images()
    masks()
    palettes()
    idx_files()
    safetensors()
    configs()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(OUT))
    print(f"make_corpus.py: {count} files, {total} bytes in {os.path.relpath(OUT, REPO)}")


if __name__ == "__main__":
    main()
