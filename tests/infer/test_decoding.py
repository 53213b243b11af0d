"""Decoding what clients send: formats, DICOM semantics, bad input, and a bounded fuzz test."""

from __future__ import annotations

import os
import struct
import zlib
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import RLELossless

from infer_service import decoding
from infer_service import dicom as dicom_module
from infer_service.decoding import DecodedImage, decode_image_bytes, decode_tensor, dicom_summary
from synthloc.errors import InvalidInput, ResourceExhausted
from synthloc.v1 import common_pb2

# The package's own files, read directly: get_testdata_file would try to download missing ones.
DICOM_DIR = Path(pydicom.data.__file__).parent / "test_files"
LIMIT = 4096 * 4096
RNG = np.random.default_rng(5)


def dicom(name: str) -> bytes:
    return (DICOM_DIR / name).read_bytes()


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def random_image(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def compressed(ds: pydicom.Dataset, syntax: str) -> bytes:
    ds = ds.copy()
    ds.compress(syntax, encoding_plugin="pydicom")
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


def rewrite(data: bytes, **tags: object) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((31, 17), np.uint8), ((31, 17), np.uint16), ((9, 13, 3), np.uint8), ((9, 13, 3), np.uint16)],
)
def test_png_round_trip_is_exact(shape: tuple[int, ...], dtype: type) -> None:
    image = random_image(shape, dtype)
    out = decode_image_bytes(encode(image, ".png"), LIMIT)
    assert out.source == "png" and out.pixels.dtype == dtype
    np.testing.assert_array_equal(out.pixels, image)


def test_png_rgba_drops_alpha() -> None:
    rgba = random_image((8, 8, 4), np.uint8)
    buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1]
    out = decode_image_bytes(buf.tobytes(), LIMIT)
    np.testing.assert_array_equal(out.pixels, rgba[:, :, :3])


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 3)])
def test_tiff_16bit_round_trip_is_exact(shape: tuple[int, ...]) -> None:
    image = random_image(shape, np.uint16)
    out = decode_image_bytes(encode(image, ".tiff"), LIMIT)
    assert out.source == "tiff" and out.pixels.dtype == np.uint16
    np.testing.assert_array_equal(out.pixels, image)


def test_jpeg_decodes_close_to_the_original() -> None:
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)
    out = decode_image_bytes(encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95), LIMIT)
    assert out.source == "jpeg" and out.pixels.shape == (48, 64, 3)
    assert np.abs(out.pixels.astype(int) - image).mean() < 2


def test_ct_applies_the_rescale_to_hounsfield_units() -> None:
    ds = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    out = decode_image_bytes(dicom("CT_small.dcm"), LIMIT)
    assert out.source == "dicom" and out.pixels.dtype == np.float32
    expected = apply_modality_lut(ds.pixel_array, ds)  # stored - 1024
    np.testing.assert_array_equal(out.pixels, expected.astype(np.float32))


@pytest.mark.parametrize(
    "twin", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
)
def test_mr_encodings_decode_to_the_same_pixels(twin: str) -> None:
    reference = pydicom.dcmread(DICOM_DIR / "MR_small.dcm").pixel_array  # signed 16-bit
    out = decode_image_bytes(dicom(twin), LIMIT)
    assert out.pixels.dtype == np.float32  # signed values keep their sign
    np.testing.assert_array_equal(out.pixels, reference.astype(np.float32))


def test_rgb_dicom_stays_rgb_and_rle_matches() -> None:
    ds = pydicom.dcmread(DICOM_DIR / "SC_rgb_small_odd.dcm")
    small = decode_image_bytes(dicom("SC_rgb_small_odd.dcm"), LIMIT).pixels
    assert small.dtype == np.uint8 and small.shape == (3, 3, 3)
    np.testing.assert_array_equal(small, ds.pixel_array)
    for twin in (dicom("SC_rgb_small_odd_big_endian.dcm"), compressed(ds, RLELossless)):
        np.testing.assert_array_equal(decode_image_bytes(twin, LIMIT).pixels, ds.pixel_array)


def test_ybr_422_is_converted_to_rgb() -> None:
    rgb = decode_image_bytes(dicom("SC_rgb_rle.dcm"), LIMIT).pixels.astype(int)
    ybr = decode_image_bytes(dicom("SC_ybr_full_422_uncompressed.dcm"), LIMIT).pixels
    assert ybr.shape == rgb.shape == (100, 100, 3)
    assert np.abs(ybr.astype(int) - rgb).mean() < 1.5  # same picture, chroma subsampled


def test_deflated_and_palette_dicom() -> None:
    deflated = decode_image_bytes(dicom("image_dfl.dcm"), LIMIT).pixels
    assert deflated.shape == (512, 512) and deflated.dtype == np.uint8
    ds = pydicom.dcmread(DICOM_DIR / "examples_palette.dcm")
    palette = decode_image_bytes(dicom("examples_palette.dcm"), LIMIT).pixels
    np.testing.assert_array_equal(palette, apply_color_lut(ds.pixel_array, ds))


def test_monochrome1_is_inverted() -> None:
    mr = pydicom.dcmread(DICOM_DIR / "MR_small.dcm").pixel_array
    out = decode_image_bytes(
        rewrite(dicom("MR_small.dcm"), PhotometricInterpretation="MONOCHROME1"), LIMIT
    )
    np.testing.assert_array_equal(out.pixels, (-1 - mr.astype(np.int32)).astype(np.float32))
    stored = pydicom.dcmread(DICOM_DIR / "image_dfl.dcm").pixel_array
    inverted = rewrite(dicom("image_dfl.dcm"), PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(decode_image_bytes(inverted, LIMIT).pixels, 255 - stored)


def padded_rle() -> bytes:
    ds = pydicom.dcmread(DICOM_DIR / "MR_small_RLE.dcm")
    ds.PixelData += bytes(20_000)  # 64x that would decode to 1.3 MB for an 8 KB frame
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


def unreadable_slope() -> bytes:
    ds = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    ds["RescaleSlope"]._value = "abc"  # past pydicom's validation, as a bad writer leaves it
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


JPEG_LS = "JPEG-LS Lossless Image Compression"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50) is not"),
        ("JPEG2000.dcm", "JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91) is not"),
        ("MR_small_jpeg_ls_lossless.dcm", f"{JPEG_LS} (1.2.840.10008.1.2.4.80) is not"),
        ("rtplan.dcm", "DICOM has no pixel data"),
        (lambda: rewrite(dicom("CT_small.dcm"), PixelData=None), "DICOM has no pixel data"),
        (
            "SC_rgb_rle_2frame.dcm",
            "the DICOM holds 2 frames and a request takes one image: send each frame as a tensor",
        ),
        ("MR_truncated.dcm", "corrupt DICOM: The number of bytes of pixel data is less than"),
        (lambda: rewrite(dicom("MR_small.dcm"), SamplesPerPixel=4), "with 4 samples per pixel"),
        (
            lambda: rewrite(dicom("examples_palette.dcm"), RedPaletteColorLookupTableData=None),
            "segmented lookup tables are not supported",
        ),
        (padded_rle, "bytes of RLE data for a frame of 8192 bytes"),
        (unreadable_slope, "corrupt DICOM: could not convert string to float: 'abc'"),
    ],
)
def test_dicom_refusals_say_why(source, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image_bytes(dicom(source) if isinstance(source, str) else source(), LIMIT)
    assert fragment in str(info.value)


def test_dicom_above_the_limit_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom_module, "pixel_array", pytest.fail)
    with pytest.raises(ResourceExhausted, match=r"128x128 = 16384 pixels.* limit of 16383 pixels"):
        decode_image_bytes(dicom("CT_small.dcm"), 128 * 128 - 1)


def test_deflate_bomb_is_refused() -> None:
    data = dicom("image_dfl.dcm")
    start = data.index(b"1.2.840.10008.1.2.1.99") + 22
    start += next(i for i, b in enumerate(data[start:]) if b not in (0, 32))  # past UID padding
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = deflater.compress(bytes(64 << 20)) + deflater.flush()
    with pytest.raises(ResourceExhausted, match="inflates to more than"):
        decode_image_bytes(data[:start] + bomb, 1000)


def test_dicom_summary_holds_no_patient_data() -> None:
    ds = pydicom.dcmread(DICOM_DIR / "CT_small.dcm")
    summary = dicom_summary(ds)
    assert summary["Modality"] == "CT" and summary["Rows"] == 128
    assert summary["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert str(ds.PatientName) not in repr(summary) and str(ds.PatientID) not in repr(summary)


PNG = encode(random_image((64, 64), np.uint8), ".png")
JPEG = encode(random_image((64, 64, 3), np.uint8), ".jpg")
ACCEPTED = "send PNG, JPEG, TIFF or DICOM Part-10 file bytes"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "the image is empty (0 bytes)"),
        (PNG[:20], "the PNG is truncated or corrupt: no complete IHDR chunk"),
        (PNG[: len(PNG) // 2], "the PNG is truncated: a chunk at byte 33 claims"),
        (JPEG[: len(JPEG) // 2], "the JPEG is truncated: it has no end-of-image marker"),
        (encode(random_image((8, 8), np.uint8), ".tiff")[:-20], "the TIFF is truncated"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", f"GIF images are not accepted: {ACCEPTED}"),
        (
            bytes(RNG.integers(0, 256, 300, dtype=np.uint8)),
            f"unrecognised image format: {ACCEPTED}",
        ),
        (bytes(128) + b"DICM" + bytes(64), "corrupt DICOM: its file meta has no Transfer Syntax"),
    ],
    ids=["empty", "png-header", "png-half", "jpeg-half", "tiff", "gif", "random", "dicom-meta"],
)
def test_bad_bytes_say_what_to_fix(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image_bytes(data, LIMIT)
    assert fragment in str(info.value)


def png_bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(100_001 * 16))
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def jpeg_bomb() -> bytes:
    data = bytearray(encode(random_image((8, 8), np.uint8), ".jpg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def tiff_bomb() -> bytes:
    data = bytearray(encode(random_image((8, 8), np.uint16), ".tiff"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        if struct.unpack_from("<H", data, entry)[0] in (256, 257):
            struct.pack_into("<HI", data, entry + 2, 4, 1)  # LONG, count 1
            struct.pack_into("<I", data, entry + 8, 200_000)
    return bytes(data)


@pytest.mark.parametrize(
    ("bomb", "size"),
    [(png_bomb, "100000x100000"), (jpeg_bomb, "60000x60000"), (tiff_bomb, "200000x200000")],
)
def test_header_above_the_limit_is_refused_before_decoding(
    bomb, size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bomb()
    monkeypatch.setattr(decoding.cv2, "imdecode", pytest.fail)
    with pytest.raises(ResourceExhausted, match=f"{size} = .* limit of {LIMIT} pixels"):
        decode_image_bytes(data, LIMIT)


@pytest.mark.parametrize(
    ("dtype", "shape", "np_dtype"),
    [
        (common_pb2.DTYPE_UINT8, (5, 7), np.uint8),
        (common_pb2.DTYPE_UINT16, (5, 7, 3), np.uint16),
        (common_pb2.DTYPE_FLOAT32, (5, 7, 1), np.float32),
    ],
)
def test_tensor_round_trip(dtype: int, shape: tuple[int, ...], np_dtype: type) -> None:
    if np_dtype is np.float32:
        image = RNG.random(shape).astype(np_dtype)
    else:
        image = random_image(shape, np_dtype)
    out = decode_tensor(dtype, shape, image.astype(image.dtype.newbyteorder("<")).tobytes(), LIMIT)
    assert out.source == "tensor" and out.pixels.dtype == np_dtype
    np.testing.assert_array_equal(out.pixels, image[:, :, 0] if shape[2:] == (1,) else image)


def test_tensor_size_mismatch_says_expected_and_got() -> None:
    with pytest.raises(
        InvalidInput, match="shape \\[4, 4\\] of DTYPE_UINT16 needs 32 bytes, got 31"
    ):
        decode_tensor(common_pb2.DTYPE_UINT16, [4, 4], bytes(31), LIMIT)


@pytest.mark.parametrize(
    ("dtype", "name"), [(common_pb2.DTYPE_INT64, "DTYPE_INT64"), (99, "99 \\(unknown\\)")]
)
def test_tensor_unknown_dtype(dtype: int, name: str) -> None:
    with pytest.raises(InvalidInput, match=f"tensor dtype {name} is not supported"):
        decode_tensor(dtype, [4, 4], bytes(16), LIMIT)


def test_tensor_bad_shape_limit_and_nan() -> None:
    with pytest.raises(InvalidInput, match="not an image"):
        decode_tensor(common_pb2.DTYPE_UINT8, [4, 4, 2], bytes(32), LIMIT)
    with pytest.raises(ResourceExhausted, match="100000x100000"):
        decode_tensor(common_pb2.DTYPE_UINT8, [100_000, 100_000], b"", LIMIT)
    nan = np.full((2, 2), np.nan, "<f4").tobytes()
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        decode_tensor(common_pb2.DTYPE_FLOAT32, [2, 2], nan, LIMIT)


FUZZ_LIMIT = 1 << 20
FUZZ_SEEDS = [
    encode(random_image((16, 16), np.uint8), ".png"),
    encode(random_image((8, 8, 3), np.uint16), ".png"),
    encode(random_image((12, 10), np.uint16), ".tiff"),
    encode(random_image((8, 8, 3), np.uint8), ".tiff"),
    encode(random_image((16, 16, 3), np.uint8), ".jpg"),
    encode(random_image((16, 16), np.uint8), ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    dicom("MR_small.dcm"),
    dicom("image_dfl.dcm"),
    dicom("SC_rgb_rle_16bit.dcm"),
    rewrite(dicom("rtdose_1frame.dcm"), PhotometricInterpretation="MONOCHROME1"),
    dicom("MR_small_RLE.dcm"),
    dicom("SC_rgb_small_odd.dcm"),
    dicom("SC_rgb_rle.dcm"),
    dicom("MR_small_bigendian.dcm"),
    dicom("rtdose_1frame.dcm"),
    rewrite(dicom("examples_palette.dcm"), Rows=8, Columns=8, PixelData=bytes(range(64))),
]
EDGE_INTS = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
HEADS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", bytes(128) + b"DICM"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FUZZ_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        # Half the edits land in the first 600 bytes, where the headers are.
        pos = draw(st.one_of(st.integers(0, min(len(data), 600)), st.integers(0, len(data))))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "delete", "int"]))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "int":  # lengths, sizes and counts at their edges
            fmt = draw(st.sampled_from(["<H", ">H", "<I", ">I"]))
            value = draw(st.sampled_from(EDGE_INTS)) & (0xFFFF if fmt[1] == "H" else 0xFFFFFFFF)
            data[pos : pos + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


inputs = st.one_of(
    st.binary(max_size=512),
    st.tuples(st.sampled_from(HEADS), st.binary(max_size=512)).map(b"".join),
    mutated(),
    mutated(),
)


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=int(os.environ.get("SYNTHLOC_FUZZ_EXAMPLES", "300")),
    deadline=timedelta(seconds=2),
    derandomize=os.environ.get("SYNTHLOC_FUZZ_RANDOM") is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(inputs)
def test_fuzz_only_images_or_client_errors(data: bytes) -> None:
    try:
        out = decode_image_bytes(data, FUZZ_LIMIT)
    except (InvalidInput, ResourceExhausted):
        return
    assert isinstance(out, DecodedImage)
    assert out.pixels.dtype in (np.uint8, np.uint16, np.float32)
    assert out.pixels.ndim == 2 or (out.pixels.ndim == 3 and out.pixels.shape[2] == 3)
    assert out.pixels.shape[0] * out.pixels.shape[1] <= FUZZ_LIMIT
