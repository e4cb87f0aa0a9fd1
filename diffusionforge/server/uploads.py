"""Images a request carries (img2img's init image, inpainting's mask): base64 in the JSON body.

Every check happens before the pixels are decoded, cheapest first, each a one-line 4xx naming
the field: the length of the base64 text (bytes, limit `serve --max-upload`), the base64
itself, the file type from its header (PNG, JPEG or WebP, read by Pillow only), and the pixel
count and size from the header (limits.limit("image_pixels"), then the model's own size). An
upload lives in memory only: nothing a request names is ever opened or written.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from diffusionforge import limits
from diffusionforge.server.base import RequestError

FORMATS = ("PNG", "JPEG", "WEBP")  # what an upload may be; Pillow decodes nothing else here
# what a browser's FileReader.readAsDataURL puts before the base64 (accepted and dropped)
DATA_URL = re.compile(r"data:[\w.+-]+/[\w.+-]+;base64,", re.ASCII)


def base64_length(n_bytes: int) -> int:
    """Characters of the base64 text of n_bytes bytes (padded)."""
    return 4 * ((n_bytes + 2) // 3)


def decode_image(
    field: str, text: str, size: tuple[int, int], max_bytes: int, mode: str
) -> Image.Image:
    """The base64 image `text` of request field `field` -> a PIL image in `mode` ("L" or
    "RGB") of `size` (width, height) pixels; RequestError (4xx, one line) otherwise."""
    match = DATA_URL.match(text)
    if match:
        text = text[match.end() :]
    text = "".join(text.split())  # base64 wrapped over lines (RFC 2045) is still base64
    if len(text) > base64_length(max_bytes):
        raise RequestError(
            field,
            f"at most {max_bytes:,} bytes of image file (serve --max-upload); got about "
            f"{len(text) * 3 // 4:,}",
            413,
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, "not valid base64 (expected the image file's bytes)") from None
    if not data:
        raise RequestError(field, "empty; expected a PNG, JPEG or WebP file in base64")
    cap = limits.limit("image_pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own check: twice its pixel limit
        raise RequestError(field, f"its header claims more than {cap:,} pixels", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(field, "not a PNG, JPEG or WebP image") from None
    w, h = im.size
    if w * h > cap:
        raise RequestError(field, f"{w}x{h} is {w * h:,} pixels, above the limit of {cap:,}", 413)
    if (w, h) != size:
        raise RequestError(
            field,
            f"the image is {w}x{h} pixels; this model makes {size[0]}x{size[1]} images "
            f"(resize or crop it first)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            return im.convert(mode)
    except (OSError, SyntaxError, ValueError, Warning, Image.DecompressionBombError) as e:
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise RequestError(field, f"the image data is damaged ({why})") from None
