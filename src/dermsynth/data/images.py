"""Decoding images and masks from disk, with one-line errors, and the crop/resize used everywhere.

Every failure is a :class:`~dermsynth.errors.DataError` whose message is one line naming the file:
a missing file, a Git LFS pointer checked out in place of the image, an empty, truncated or corrupt file.

EXIF orientation is deliberately *not* applied: ISIC/PH2 masks are drawn on the stored pixel grid,
so rotating the image but not its mask would misalign them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.errors import DataError

LFS_HEADER = b"version https://git-lfs.github.com/spec/v1"

# Errors PIL raises for unreadable data: UnidentifiedImageError and "image file is truncated" are OSError;
# some decoders raise SyntaxError/ValueError/EOFError/struct errors on garbage.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, Image.DecompressionBombError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_file(path: Path, what: str) -> None:
    """Raise DataError for a missing/empty file or a Git LFS pointer in place of binary data."""
    if not path.exists():
        raise DataError(f"{path}: {what} file not found")
    if not path.is_file():
        raise DataError(f"{path}: is a folder, not a {what} file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(LFS_HEADER))
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} file ({_one_line(exc)})") from None
    if not head:
        raise DataError(f"{path}: empty {what} file (0 bytes)")
    if head.startswith(LFS_HEADER):
        raise DataError(
            f"{path}: is a Git LFS pointer, not the real {what}; fetch the real file (git lfs pull) and try again"
        )


def _open_decoded(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image (``.load()`` so truncated data fails here, not later).

    Relies on PIL's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (never switched on in this package).
    """
    _check_file(path, what)
    try:
        im = Image.open(path)
        im.load()
        return im
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: corrupt or unreadable {what} ({_one_line(exc)})") from None


def _high_bit_depth_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer or float greyscale -> uint8 (H, W), scaled by the type's range."""
    arr = np.asarray(im)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    hi = 65535.0 if int(arr.max(initial=0)) > 255 else 255.0
    return np.clip(arr.astype(np.float64) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)


#: the smallest image side read as a photograph: a 1x1 "image" enlarged to the training size is one flat colour,
#: and below 4 px nothing of a lesion can be seen
MIN_IMAGE_SIDE = 4


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (greyscale, palette, RGBA and CMYK are converted)."""
    path = Path(path)
    im = _open_decoded(path, "image")
    try:
        with im:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                grey = _high_bit_depth_to_uint8(im)
                arr = np.repeat(grey[:, :, None], 3, axis=2)
            else:
                arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({_one_line(exc)})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{path}: decoded to an unexpected shape {arr.shape}")
    if min(arr.shape[:2]) < MIN_IMAGE_SIDE:  # enlarged to the training size it would be a flat colour
        raise DataError(f"{path}: {arr.shape[1]}x{arr.shape[0]} px is too small to be a lesion photograph "
                        f"(at least {MIN_IMAGE_SIDE} px a side)")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def load_mask(path: str | Path) -> np.ndarray:
    """Decode a binary mask to uint8 (H, W) in {0, 1}.

    ISIC masks are {0, 255} 8-bit PNGs, PH2 masks 1-bit; masks saved as {0, 1} also occur. The threshold is
    ``> 127`` for 0..255 data (robust to JPEG-ish noise) and ``> 0`` when the mask's maximum is 1.
    """
    path = Path(path)
    im = _open_decoded(path, "mask")
    try:
        with im:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im if im.mode == "L" else im.convert("L"))
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: corrupt or unreadable mask ({_one_line(exc)})") from None
    return binarize_mask(arr)


def load_superpixels(path: str | Path) -> np.ndarray:
    """ISIC 2018 Task 2's ``<id>_superpixels.png``: superpixel ids encoded in RGB (id = R + (G << 8) + (B << 16),
    the challenge's convention) -> int32 (H, W)."""
    path = Path(path)
    im = _open_decoded(path, "superpixel map")
    try:
        with im:
            rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: corrupt or unreadable superpixel map ({_one_line(exc)})") from None
    return rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)


def binarize_mask(arr: np.ndarray) -> np.ndarray:
    """A mask array (any numeric dtype, (H, W) or (H, W, C)) -> uint8 (H, W) in {0, 1}."""
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    hi = float(arr.max(initial=0))
    threshold = 0 if hi <= 1 else (127 if hi <= 255 else hi / 2)
    return (arr > threshold).astype(np.uint8)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """The largest centred square of an (H, W) or (H, W, C) array (a view, no copy)."""
    h, w = img.shape[:2]
    side = min(h, w)
    top = (h - side) // 2
    left = (w - side) // 2
    return img[top : top + side, left : left + side]


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, 3) image to ``size`` (an int for a square, or (width, height)).

    Filter: PIL's LANCZOS. PIL scales the filter's support with the reduction factor, so downsampling
    (the usual case: 450..2592 px down to 32..256 px) is properly anti-aliased like an area/box average,
    but keeps more detail than BOX or bilinear (a windowed sinc: a sharper low-pass). The cost is a little
    ringing at hard edges, invisible at these scales. It is also the filter most GAN papers' preprocessing
    scripts used when they "downsampled" ISIC images, so FID numbers stay comparable.
    """
    w, h = (size, size) if isinstance(size, int) else size
    if img.shape[0] == h and img.shape[1] == w:
        return np.ascontiguousarray(img)
    out = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.LANCZOS)
    return np.asarray(out)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a {0, 1} uint8 (H, W) mask, or int32 superpixel ids, with nearest-neighbour sampling (values kept)."""
    w, h = (size, size) if isinstance(size, int) else size
    if mask.shape[0] == h and mask.shape[1] == w:
        return np.ascontiguousarray(mask)
    dtype = np.int32 if mask.dtype == np.int32 else np.uint8
    out = Image.fromarray(np.ascontiguousarray(mask, dtype=dtype)).resize((w, h), Image.NEAREST)
    return np.asarray(out)


def preprocess_image(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size`` x ``size`` (the papers' preprocessing)."""
    return resize(center_crop_square(img), size)


def preprocess_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """The mask counterpart of :func:`preprocess_image` (same crop, nearest-neighbour resize)."""
    return resize_mask(center_crop_square(mask), size)


ASPECT_TOLERANCE = 0.01


def fit_mask_to_image(mask: np.ndarray, image_shape: tuple[int, ...], mask_path: str | Path = "mask") -> np.ndarray:
    """Bring a mask to its image's pixel grid.

    Same size: returned as is. Same aspect ratio (within 1 %) at another size, e.g. HAM10000's 600x450 masks
    for 200x150 images: nearest-neighbour resize. Different aspect ratio: DataError naming the mask and both sizes.
    """
    h, w = image_shape[:2]
    mh, mw = mask.shape[:2]
    if (mh, mw) == (h, w):
        return mask
    aspect_img = w / h
    aspect_mask = mw / mh
    if abs(aspect_mask - aspect_img) / aspect_img <= ASPECT_TOLERANCE:
        return resize_mask(mask, (w, h))
    raise DataError(
        f"{mask_path}: mask is {mw}x{mh} but its image is {w}x{h} (different aspect ratio; cannot align them)"
    )
