"""Image-only stand-in for qwen_vl_utils (which imports torchvision, unusable beside torch 2.13.0+cpu).

Used by the integration tests only when the real package cannot be imported. It follows qwen_vl_utils' image
path: the picture from the content entry (PIL, bytes, {"bytes"} or a path), RGB, then resized so both sides are
multiples of 2 x patch size (28) and the pixel count lies in [min_pixels, max_pixels] (entry keys, else
4 x 28 x 28 and 16384 x 28 x 28). Videos are not supported.
"""

from __future__ import annotations

import io
import math

__ssrl_stub__ = True
IMAGE_FACTOR_PATCH = 14
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen_vl_utils' rule: sides rounded to multiples of ``factor``, pixel count clamped to [min, max]."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def fetch_image(ele: dict, image_patch_size: int = IMAGE_FACTOR_PATCH):
    from PIL import Image

    image = ele.get("image", ele.get("image_url"))
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, (bytes, bytearray)):
        pil = Image.open(io.BytesIO(image))
    elif isinstance(image, dict) and "bytes" in image:
        pil = Image.open(io.BytesIO(image["bytes"]))
    elif isinstance(image, str):
        pil = Image.open(image[len("file://"):] if image.startswith("file://") else image)
    else:
        raise TypeError(f"unsupported image {type(image)}")
    pil = pil.convert("RGB")
    factor = image_patch_size * 2
    h, w = smart_resize(pil.height, pil.width, factor, ele.get("min_pixels", MIN_PIXELS), ele.get("max_pixels", MAX_PIXELS))
    return pil.resize((w, h), Image.BICUBIC)


def process_vision_info(conversations, return_video_kwargs=False, return_video_metadata=False, image_patch_size=14):
    if conversations and isinstance(conversations[0], dict):
        conversations = [conversations]
    images = []
    for conversation in conversations:
        for message in conversation:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for ele in content:
                if not isinstance(ele, dict):
                    continue
                if "video" in ele or ele.get("type") == "video":
                    raise NotImplementedError("the qwen_vl_utils stand-in handles images only")
                if "image" in ele or "image_url" in ele or ele.get("type") in ("image", "image_url"):
                    images.append(fetch_image(ele, image_patch_size))
    out = (images or None, None)
    return (*out, None) if return_video_kwargs else out
