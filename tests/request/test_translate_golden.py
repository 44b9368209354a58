# The docs' strings are kept whole, on one line each, to compare them with the docs by eye.
# ruff: noqa: E501
"""Golden tests: every request body in the vendor docs, rebuilt from unified arguments.

Each expected ``body`` is copied verbatim from ``upstream-api/video-generation.txt``
(``line`` is where its ``"model"`` key is), placeholder data URLs
(``data:image/png;base64,iVBORw0KGgoAAxxxx...``) and the mis-encoded ``[ĺž1]``
included (the one shell-escaped apostrophe of a curl command is a plain ``'`` in JSON).
Every ``variant`` is a set of unified arguments that must pass validation and
translate to exactly that body (compared as dicts and as canonical JSON text,
so ``true`` never passes for ``1``).

The placeholder data URLs are not valid base64, so media are handed to
``build_body`` already resolved (the URL as written), the way
``inputs.resolve_media`` passes an https URL through untouched.

Seedance examples whose markers are not in the server's canonical order
(``--rs 720p --dur 5 ...``) are reproduced as a caller writes them: markers in
the prompt, optionally mixed with explicit arguments (see translate.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from gravitex_mcp.catalog.models import CATALOG, MODE_ARGUMENTS, MODEL_IDS
from gravitex_mcp.domain import Mode
from gravitex_mcp.request.arguments import VideoArguments
from gravitex_mcp.request.translate import MediaURLs, build_body
from gravitex_mcp.request.validation import CheckedRequest, validate


@dataclass(frozen=True)
class Golden:
    name: str
    line: int
    body: dict[str, Any]
    variants: tuple[dict[str, Any], ...]


def _media(args: VideoArguments) -> MediaURLs:
    """Media "resolved" to the URL as written."""
    return MediaURLs(
        image=args.image,
        last_frame=args.last_frame,
        reference_images=tuple(args.reference_images or ()),
        audio_url=args.audio_url,
    )


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


GOLDEN: tuple[Golden, ...] = (
    Golden(
        "sora_text_to_video_basic",
        146,
        body={
            "model": "sora-2",
            "prompt": "A cute little cat playing in the garden, sunny and warm",
            "seconds": "4",
            "size": "720x1280",
        },
        variants=(
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=4,
                aspect_ratio="9:16",
            ),
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=4,
                size="720x1280",
            ),
        ),
    ),
    Golden(
        "sora_text_to_video_landscape_8s",
        155,
        body={
            "model": "sora-2",
            "prompt": "A cute little cat playing in the garden, sunny and warm",
            "seconds": "8",
            "size": "1280x720",
        },
        variants=(
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=8,
                aspect_ratio="16:9",
            ),
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=8,
                size="1280*720",
            ),
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=8,
                size="1280x720",
                aspect_ratio="16:9",
            ),
        ),
    ),
    Golden(
        "sora_image_to_video",
        164,
        body={
            "model": "sora-2",
            "prompt": "A cute little cat playing in the garden, sunny and warm",
            "seconds": "4",
            "size": "720x1280",
            "input_reference": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
        },
        variants=(
            dict(
                model="sora-2",
                prompt="A cute little cat playing in the garden, sunny and warm",
                duration=4,
                size="720x1280",
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
            ),
        ),
    ),
    Golden(
        "sora_remix",
        174,
        body={
            "model": "sora-2",
            "prompt": "Change the video to a night scene with stars",
            "seconds": "4",
            "size": "720x1280",
            "remix_from_video_id": "video_69095b4ce0048190893a01510c0c98b0",
        },
        variants=(
            dict(
                model="sora-2",
                prompt="Change the video to a night scene with stars",
                duration=4,
                size="720x1280",
                remix_from_video_id="video_69095b4ce0048190893a01510c0c98b0",
            ),
        ),
    ),
    Golden(
        "veo_text_to_video_basic",
        185,
        body={
            "model": "veo-3.1-fast-generate-preview",
            "prompt": "Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
            "durationSeconds": 8,
            "aspectRatio": "16:9",
            "resolution": "1080p",
            "fps": 24,
            "generateAudio": True,
            "personGeneration": "allow_all",
            "addWatermark": False,
        },
        variants=(
            dict(
                model="veo-3.1-fast-generate-preview",
                prompt="Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
                duration=8,
                aspect_ratio="16:9",
                resolution="1080p",
                fps=24,
                generate_audio=True,
                person_generation="allow_all",
                watermark=False,
            ),
        ),
    ),
    Golden(
        "veo_text_to_video_portrait_seed",
        199,
        body={
            "model": "veo-3.1-fast-generate-preview",
            "prompt": "Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
            "durationSeconds": 6,
            "aspectRatio": "9:16",
            "resolution": "720p",
            "fps": 30,
            "generateAudio": False,
            "personGeneration": "allow_adult",
            "addWatermark": True,
            "seed": 12345,
            "sampleCount": 2,
        },
        variants=(
            dict(
                model="veo-3.1-fast-generate-preview",
                prompt="Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
                duration=6,
                aspect_ratio="9:16",
                resolution="720p",
                fps=30,
                generate_audio=False,
                person_generation="allow_adult",
                watermark=True,
                seed=12345,
                sample_count=2,
            ),
        ),
    ),
    Golden(
        "veo_image_to_video_first_frame",
        215,
        body={
            "model": "veo-3.1-fast-generate-preview",
            "prompt": "Generate video based on this image, scene gradually unfolds",
            "durationSeconds": 8,
            "aspectRatio": "16:9",
            "resolution": "1080p",
            "fps": 24,
            "image": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
            "generateAudio": True,
            "personGeneration": "dont_allow",
            "addWatermark": False,
        },
        variants=(
            dict(
                model="veo-3.1-fast-generate-preview",
                prompt="Generate video based on this image, scene gradually unfolds",
                duration=8,
                aspect_ratio="16:9",
                resolution="1080p",
                fps=24,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                generate_audio=True,
                person_generation="dont_allow",
                watermark=False,
            ),
        ),
    ),
    Golden(
        "veo_first_last_frame",
        230,
        body={
            "model": "veo-3.1-fast-generate-preview",
            "prompt": "Transition from first image to second image",
            "durationSeconds": 8,
            "aspectRatio": "16:9",
            "resolution": "1080p",
            "fps": 24,
            "image": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
            "lastFrame": "data:image/png;base64,iVBORw0KGgoAAyyyy...",
            "generateAudio": True,
            "seed": 67890,
            "sampleCount": 1,
        },
        variants=(
            dict(
                model="veo-3.1-fast-generate-preview",
                prompt="Transition from first image to second image",
                duration=8,
                aspect_ratio="16:9",
                resolution="1080p",
                fps=24,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
                generate_audio=True,
                seed=67890,
                sample_count=1,
            ),
        ),
    ),
    Golden(
        "wan_text_to_video_basic",
        247,
        body={
            "model": "wan2.5-t2v-preview",
            "prompt": "A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
            "duration": 5,
            "size": "1280*720",
            "smart_rewrite": True,
            "generate_audio": True,
        },
        variants=(
            dict(
                model="wan2.5-t2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=5,
                size="1280*720",
                smart_rewrite=True,
                generate_audio=True,
            ),
            dict(
                model="wan2.5-t2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=5,
                resolution="720p",
                aspect_ratio="16:9",
                smart_rewrite=True,
                generate_audio=True,
            ),
        ),
    ),
    Golden(
        "wan_text_to_video_10s_1080p_seed",
        258,
        body={
            "model": "wan2.5-t2v-preview",
            "prompt": "A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
            "duration": 10,
            "size": "1920*1080",
            "smart_rewrite": False,
            "generate_audio": False,
            "seed": 123456,
        },
        variants=(
            dict(
                model="wan2.5-t2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=10,
                size="1920*1080",
                smart_rewrite=False,
                generate_audio=False,
                seed=123456,
            ),
            dict(
                model="wan2.5-t2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=10,
                resolution="1080p",
                aspect_ratio="16:9",
                smart_rewrite=False,
                generate_audio=False,
                seed=123456,
            ),
            dict(
                model="wan2.5-t2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=10,
                size="1920x1080",
                resolution="1080p",
                aspect_ratio="16:9",
                smart_rewrite=False,
                generate_audio=False,
                seed=123456,
            ),
        ),
    ),
    Golden(
        "wan_image_to_video",
        270,
        body={
            "model": "wan2.5-i2v-preview",
            "prompt": "Kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
            "duration": 5,
            "resolution": "720p",
            "smart_rewrite": True,
            "generate_audio": True,
            "image": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
        },
        variants=(
            dict(
                model="wan2.5-i2v-preview",
                prompt="Kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=5,
                resolution="720p",
                smart_rewrite=True,
                generate_audio=True,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
            ),
        ),
    ),
    Golden(
        "wan_image_to_video_custom_audio",
        282,
        body={
            "model": "wan2.5-i2v-preview",
            "prompt": "Kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
            "duration": 10,
            "resolution": "1080p",
            "smart_rewrite": False,
            "generate_audio": False,
            "audio_url": "https://example.com/audio.mp3",
            "image": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
            "seed": 789012,
        },
        variants=(
            dict(
                model="wan2.5-i2v-preview",
                prompt="Kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                duration=10,
                resolution="1080p",
                smart_rewrite=False,
                generate_audio=False,
                audio_url="https://example.com/audio.mp3",
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                seed=789012,
            ),
        ),
    ),
    Golden(
        "seedance_lite_t2v_basic",
        297,
        body={
            "model": "doubao-seedance-1-0-lite-t2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A cute kitten playing in a garden, sunny day --ratio 16:9 --dur 5 --rs 720p --wm false",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-t2v-250428",
                prompt="A cute kitten playing in a garden, sunny day",
                aspect_ratio="16:9",
                duration=5,
                resolution="720p",
                watermark=False,
            ),
        ),
    ),
    Golden(
        "seedance_lite_t2v_full",
        311,
        body={
            "model": "doubao-seedance-1-0-lite-t2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A cute kitten playing in a garden, sunny day --ratio 9:16 --dur 10 --rs 1080p --fps 30 --wm true --seed 12345",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-t2v-250428",
                prompt="A cute kitten playing in a garden, sunny day",
                aspect_ratio="9:16",
                duration=10,
                resolution="1080p",
                fps=30,
                watermark=True,
                seed=12345,
            ),
        ),
    ),
    Golden(
        "seedance_lite_i2v_first_frame",
        325,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A girl opens her eyes and looks gently at the camera --ratio adaptive --dur 5 --rs 720p --wm false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A girl opens her eyes and looks gently at the camera",
                aspect_ratio="adaptive",
                duration=5,
                resolution="720p",
                watermark=False,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
            ),
        ),
    ),
    Golden(
        "seedance_lite_i2v_first_last_frame",
        345,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --fps 24 --cf false --wm false --seed 67890",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                        "role": "first_frame",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAyyyy...",
                        },
                        "role": "last_frame",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --fps 24 --cf false --wm false --seed 67890",
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5",
                fps=24,
                camera_fixed=False,
                watermark=False,
                seed=67890,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --fps 24 --cf false --wm false --seed 67890",
                resolution="720p",
                duration=5,
                seed=67890,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
            ),
        ),
    ),
    Golden(
        "seedance_lite_i2v_reference_images",
        373,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5 --ratio 16:9 --wm false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref1.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref2.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref3.png",
                        },
                        "role": "reference_image",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5 --ratio 16:9 --wm false",
                reference_images=[
                    "https://example.com/ref1.png",
                    "https://example.com/ref2.png",
                    "https://example.com/ref3.png",
                ],
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5 --ratio 16:9",
                watermark=False,
                reference_images=[
                    "https://example.com/ref1.png",
                    "https://example.com/ref2.png",
                    "https://example.com/ref3.png",
                ],
            ),
        ),
    ),
    Golden(
        "seedance_pro_first_frame",
        408,
        body={
            "model": "doubao-seedance-1-0-pro-250528",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A girl opens her eyes and looks gently at the camera --ratio 16:9 --dur 5 --rs 1080p --wm false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-pro-250528",
                prompt="A girl opens her eyes and looks gently at the camera",
                aspect_ratio="16:9",
                duration=5,
                resolution="1080p",
                watermark=False,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
            ),
        ),
    ),
    Golden(
        "seedance_15_pro_text_to_video_audio",
        428,
        body={
            "model": "doubao-seedance-1-5-pro-251215",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A cute kitten playing in a sunny garden, gentle breeze --ratio 16:9 --dur 6 --rs 720p --wm false",
                    },
                ],
                "return_last_frame": True,
                "callback_url": "https://your-domain.com/callback",
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-5-pro-251215",
                prompt="A cute kitten playing in a sunny garden, gentle breeze",
                aspect_ratio="16:9",
                duration=6,
                resolution="720p",
                watermark=False,
                return_last_frame=True,
                callback_url="https://your-domain.com/callback",
            ),
        ),
    ),
    Golden(
        "seedance_15_pro_noaudio_first_last_frame",
        444,
        body={
            "model": "doubao-seedance-1-5-pro-251215-noAudio",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "Transition from static scene to dynamic motion --ratio 9:16 --dur 8 --rs 480p --wm false --seed 12345",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                        "role": "first_frame",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAyyyy...",
                        },
                        "role": "last_frame",
                    },
                ],
                "return_last_frame": True,
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-5-pro-251215-noAudio",
                prompt="Transition from static scene to dynamic motion",
                aspect_ratio="9:16",
                duration=8,
                resolution="480p",
                watermark=False,
                seed=12345,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
                return_last_frame=True,
            ),
        ),
    ),
    Golden(
        "complete_seedance_t2v",
        545,
        body={
            "model": "doubao-seedance-1-0-lite-t2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A cute kitten playing in a garden, sunny day --ratio 16:9 --dur 5 --rs 720p --wm false",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-t2v-250428",
                prompt="A cute kitten playing in a garden, sunny day",
                aspect_ratio="16:9",
                duration=5,
                resolution="720p",
                watermark=False,
            ),
        ),
    ),
    Golden(
        "complete_seedance_i2v_first_frame",
        560,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A girl opens her eyes and looks gently at the camera --ratio adaptive --dur 5 --rs 720p --wm false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A girl opens her eyes and looks gently at the camera",
                aspect_ratio="adaptive",
                duration=5,
                resolution="720p",
                watermark=False,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
            ),
        ),
    ),
    Golden(
        "complete_seedance_i2v_first_last_frame",
        581,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --cf false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAxxxx...",
                        },
                        "role": "first_frame",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/png;base64,iVBORw0KGgoAAyyyy...",
                        },
                        "role": "last_frame",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --cf false",
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5",
                camera_fixed=False,
                image="data:image/png;base64,iVBORw0KGgoAAxxxx...",
                last_frame="data:image/png;base64,iVBORw0KGgoAAyyyy...",
            ),
        ),
    ),
    Golden(
        "complete_seedance_i2v_reference_images",
        610,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref1.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref2.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref3.png",
                        },
                        "role": "reference_image",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5",
                reference_images=[
                    "https://example.com/ref1.png",
                    "https://example.com/ref2.png",
                    "https://example.com/ref3.png",
                ],
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style --rs 720p --dur 5",
                resolution="720p",
                duration=5,
                reference_images=[
                    "https://example.com/ref1.png",
                    "https://example.com/ref2.png",
                    "https://example.com/ref3.png",
                ],
            ),
        ),
    ),
    Golden(
        "complete_sora",
        656,
        body={
            "model": "sora-2",
            "prompt": "A cute kitten playing in a garden, sunny day, warm scene",
            "seconds": "4",
            "size": "720x1280",
        },
        variants=(
            dict(
                model="sora-2",
                prompt="A cute kitten playing in a garden, sunny day, warm scene",
                duration=4,
                size="720x1280",
            ),
            dict(
                model="sora-2",
                prompt="A cute kitten playing in a garden, sunny day, warm scene",
                duration=4,
                aspect_ratio="9:16",
            ),
        ),
    ),
    Golden(
        "complete_veo_31_first_last_frame",
        729,
        body={
            "model": "veo-3.1-generate-preview",
            "prompt": "Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
            "durationSeconds": 8,
            "aspectRatio": "16:9",
            "resolution": "1080p",
            "generateAudio": True,
            "image": "https://example.com/start-frame.png",
            "lastFrame": "https://example.com/end-frame.png",
        },
        variants=(
            dict(
                model="veo-3.1-generate-preview",
                prompt="Aerial view of a sci-fi city at dawn, sunlight piercing through clouds",
                duration=8,
                aspect_ratio="16:9",
                resolution="1080p",
                generate_audio=True,
                image="https://example.com/start-frame.png",
                last_frame="https://example.com/end-frame.png",
            ),
        ),
    ),
    Golden(
        "complete_wan_image_to_video",
        757,
        body={
            "model": "wan2.5-i2v-preview",
            "prompt": "A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
            "image": "https://example.com/cat.jpg",
            "duration": 5,
            "resolution": "720p",
            "smart_rewrite": True,
            "generate_audio": True,
        },
        variants=(
            dict(
                model="wan2.5-i2v-preview",
                prompt="A kitten slowly opens its eyes, ears gently twitch, camera slowly pushes in",
                image="https://example.com/cat.jpg",
                duration=5,
                resolution="720p",
                smart_rewrite=True,
                generate_audio=True,
            ),
        ),
    ),
    Golden(
        "complete_seedance_pro_t2v",
        784,
        body={
            "model": "doubao-seedance-1-0-pro-250528",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "Multiple shots. A detective enters a dimly lit room. He examines clues on the table, picks up an item. Camera turns to him thinking. --ratio 16:9 --dur 5",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-pro-250528",
                prompt="Multiple shots. A detective enters a dimly lit room. He examines clues on the table, picks up an item. Camera turns to him thinking.",
                aspect_ratio="16:9",
                duration=5,
            ),
        ),
    ),
    Golden(
        "complete_seedance_pro_i2v_adaptive",
        799,
        body={
            "model": "doubao-seedance-1-0-pro-250528",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A girl holding a fox, the girl opens her eyes, looks gently at the camera, the fox hugs friendly, camera slowly pulls out, the girl's hair is blown by the wind --ratio adaptive --dur 5",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/first-frame.png",
                        },
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-pro-250528",
                prompt="A girl holding a fox, the girl opens her eyes, looks gently at the camera, the fox hugs friendly, camera slowly pulls out, the girl's hair is blown by the wind",
                aspect_ratio="adaptive",
                duration=5,
                image="https://example.com/first-frame.png",
            ),
        ),
    ),
    Golden(
        "complete_seedance_lite_i2v_first_last_frame_urls",
        820,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --cf false",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/first-frame.png",
                        },
                        "role": "first_frame",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/last-frame.png",
                        },
                        "role": "last_frame",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5 --cf false",
                image="https://example.com/first-frame.png",
                last_frame="https://example.com/last-frame.png",
            ),
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="A blue-green jingwei bird transforms into human form --rs 720p --dur 5",
                camera_fixed=False,
                image="https://example.com/first-frame.png",
                last_frame="https://example.com/last-frame.png",
            ),
        ),
    ),
    Golden(
        "complete_seedance_lite_i2v_reference_images_no_markers",
        849,
        body={
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "metadata": {
                "content": [
                    {
                        "type": "text",
                        "text": "[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref1.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref2.png",
                        },
                        "role": "reference_image",
                    },
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "https://example.com/ref3.png",
                        },
                        "role": "reference_image",
                    },
                ],
            },
        },
        variants=(
            dict(
                model="doubao-seedance-1-0-lite-i2v-250428",
                prompt="[ĺž1] A boy wearing glasses and blue T-shirt and [ĺž2] corgi dog, sitting on [ĺž3] lawn, 3D cartoon style",
                reference_images=[
                    "https://example.com/ref1.png",
                    "https://example.com/ref2.png",
                    "https://example.com/ref3.png",
                ],
            ),
        ),
    ),
)

CASES = [
    pytest.param(case, variant, id=f"{case.name}-{index}")
    for case in GOLDEN
    for index, variant in enumerate(case.variants)
]


@pytest.mark.parametrize(("case", "variant"), CASES)
def test_doc_example_is_reproduced_exactly(case: Golden, variant: dict[str, Any]) -> None:
    args = VideoArguments(**variant)
    body = build_body(validate(args), _media(args))
    assert body == case.body
    assert _canonical(body) == _canonical(case.body)


def test_every_doc_example_is_covered() -> None:
    # 4 Sora, 4 Veo, 4 Wan, 8 Seedance, 4 + 4 Seedance complete examples,
    # and the Sora, Veo and Wan complete examples.
    assert len(GOLDEN) == 31
    assert len({case.line for case in GOLDEN}) == 31
    assert {case.body["model"] for case in GOLDEN} <= set(MODEL_IDS)


# --- beyond the examples --------------------------------------------------------------


def _body(**kwargs: Any) -> dict[str, Any]:
    args = VideoArguments(**kwargs)
    return build_body(validate(args), _media(args))


@pytest.mark.parametrize("model", MODEL_IDS)
def test_no_invented_defaults(model: str) -> None:
    # The fewest arguments the model accepts: the prompt, plus the images of its
    # smallest mode when it has no text-to-video mode.
    spec = CATALOG[model]
    mode = min(spec.modes, key=lambda m: (len(MODE_ARGUMENTS[m]), m.value))
    media: dict[str, Any] = {
        name: ["https://e.com/r.png"] if name == "reference_images" else "https://e.com/i.png"
        for name in MODE_ARGUMENTS[mode]
    }
    body = _body(model=model, prompt="A quiet lake", **media)
    if "metadata" in body:
        assert body["metadata"]["content"][0] == {"type": "text", "text": "A quiet lake"}
        assert len(body["metadata"]["content"]) == 1 + len(media)
        assert set(body) == {"model", "metadata"}
        assert set(body["metadata"]) == {"content"}
    else:
        assert set(body) == {"model", "prompt", *(("image",) if media else ())}


def test_sora_seconds_travel_as_a_string_and_sizes_as_wxh() -> None:
    body = _body(model="sora-2", prompt="p", duration=12, size="1280*720")
    assert body == {"model": "sora-2", "prompt": "p", "seconds": "12", "size": "1280x720"}


def test_wan_t2v_size_is_spelled_with_a_star_and_picked_from_the_table() -> None:
    body = _body(model="wan2.5-t2v-preview", prompt="p", size="832x480")
    assert body["size"] == "832*480"
    body = _body(model="wan2.5-t2v-preview", prompt="p", resolution="720p", aspect_ratio="3:4")
    assert body == {"model": "wan2.5-t2v-preview", "prompt": "p", "size": "832*1088"}


def test_wan_i2v_sends_resolution_itself() -> None:
    body = _body(
        model="wan2.5-i2v-preview", prompt="p", image="https://e.com/a.png", resolution="480p"
    )
    assert body["resolution"] == "480p"
    assert "size" not in body


def test_seedance_appends_markers_in_canonical_order() -> None:
    body = _body(
        model="doubao-seedance-1-0-lite-i2v-250428",
        prompt="A bird  ",
        seed=7,
        watermark=True,
        camera_fixed=True,
        fps=30,
        resolution="480p",
        duration=10,
        aspect_ratio="1:1",
        image="https://e.com/a.png",
    )
    assert body["metadata"]["content"][0]["text"] == (
        "A bird --ratio 1:1 --dur 10 --rs 480p --fps 30 --cf true --wm true --seed 7"
    )


def test_seedance_keeps_prompt_markers_and_does_not_repeat_them() -> None:
    body = _body(
        model="doubao-seedance-1-0-pro-250528",
        prompt="A cat --duration 10 --rs 720p",
        duration=10,
        resolution="720p",
        seed=1,
    )
    assert body["metadata"]["content"][0]["text"] == "A cat --duration 10 --rs 720p --seed 1"


def test_seedance_image_roles() -> None:
    first = "https://e.com/first.png"
    last = "https://e.com/last.png"
    lone = _body(model="doubao-seedance-1-5-pro-251215", prompt="p", image=first)
    assert lone["metadata"]["content"][1] == {"type": "image_url", "image_url": {"url": first}}
    pair = _body(model="doubao-seedance-1-5-pro-251215", prompt="p", image=first, last_frame=last)
    assert [item.get("role") for item in pair["metadata"]["content"][1:]] == [
        "first_frame",
        "last_frame",
    ]


def test_build_body_refuses_what_it_cannot_carry() -> None:
    spec = CATALOG["veo-3.1-generate-preview"]
    unchecked = CheckedRequest(spec, Mode.TEXT_TO_VIDEO, "p", {"camera_fixed": True})
    with pytest.raises(ValueError, match="cannot carry"):
        build_body(unchecked, MediaURLs())
    unchecked = CheckedRequest(spec, Mode.FIRST_FRAME, "p", {"image": "x.png"})
    with pytest.raises(ValueError, match="resolved URL of image"):
        build_body(unchecked, MediaURLs())
