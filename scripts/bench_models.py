"""Model benchmarks, one subcommand per method.

    OMP_NUM_THREADS=1 python3 scripts/bench_models.py pllava [--device cpu] [--repeats 3]

``pllava``: time to caption one 16-frame video end to end (decode, vision tower, pooling, 32 generated
tokens) and the number of visual tokens entering the LLM, for videolm's PLLaVA and for transformers'
``LlavaNextVideoForConditionalGeneration`` driven by its ``LlavaNextVideoProcessor``, both holding the
same tiny random weights (CLIP tower with a 24 x 24 patch grid as in LLaVA-1.5 at 336 px / 14, tiny Llama).
PLLaVA pools (16, 24, 24) -> (16, 12, 12) after the projector; LLaVA-NeXT-Video average-pools each
frame 2 x 2 before the projector, so both give 16 x 12 x 12 tokens here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _tiny_models(tokenizer, image_size: int, patch: int):
    from transformers import LlavaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    from videolm.models.pllava import PLLaVA

    vision = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, image_size=image_size, patch_size=patch)
    text = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=len(tokenizer), max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                eos_token_id=2)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    video_id = tokenizer.convert_tokens_to_ids("<video>")
    torch.manual_seed(0)
    grid = image_size // patch
    ours = PLLaVA(LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_id),
                  pooling_shape=(16, grid // 2, grid // 2), num_frames=16).eval()
    ref = LlavaNextVideoForConditionalGeneration(LlavaNextVideoConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, video_token_index=video_id,
        spatial_pool_mode="average", spatial_pool_stride=2)).eval()
    # the same weights: our names are the official PLLaVA ones, transformers' are model.* / lm_head
    state = {}
    for k, v in ours.state_dict().items():
        if k.startswith("language_model.model."):
            k = "model.language_model." + k[len("language_model.model."):]
        elif k.startswith("language_model.lm_head."):
            k = k[len("language_model."):]
        else:
            k = "model." + k
        state[k] = v
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"model.image_newline"}, (missing, unexpected)
    return ours, ref


def _processor(tokenizer, image_size: int, patch: int):
    from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor
    from transformers.models.llava_next_video.video_processing_llava_next_video import (
        LlavaNextVideoVideoProcessor,
    )

    size = {"shortest_edge": image_size}
    crop = {"height": image_size, "width": image_size}
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessor(size=size, crop_size=crop,
                                                image_grid_pinpoints=[[image_size, image_size]]),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
    )


def bench_pllava(args) -> dict:
    from videolm.data.sampling import uniform_indices
    from videolm.data.synthetic import render_sample, write_video
    from videolm.infer import CAPTION_PROMPT, VideoLLM
    from videolm.io import VideoReader
    from videolm.models.pllava import TEMPLATES, train_word_tokenizer

    torch.set_num_threads(args.threads)
    image_size, patch, tokens = args.image_size, args.patch, 32
    words = [f"w{i}" for i in range(200)]
    tokenizer = train_word_tokenizer([" ".join(words), "USER: ASSISTANT: Describe the video."])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    ours, ref = _tiny_models(tokenizer, image_size, patch)
    processor = _processor(tokenizer, image_size, patch)
    pipe = VideoLLM(ours, tokenizer, num_frames=16, device=args.device, batch_size=1)
    ref = ref.to(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        frames, _ = render_sample(0, size=image_size, num_frames=16)
        write_video(video, frames)
        gen = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)

        def run_ours() -> int:
            clip = pipe.frames(video)[None].to(args.device)
            text = pipe.tokenizer(pipe.template.prompt(CAPTION_PROMPT), return_tensors="pt")
            out = ours.generate(text["input_ids"].to(args.device), text["attention_mask"].to(args.device), clip,
                                **gen)
            assert out.shape[1] == tokens
            return ours.num_visual_tokens

        prompt_ref = TEMPLATES["vicuna"].prompt(CAPTION_PROMPT).replace("<image>", "<video>")

        def run_ref() -> int:
            with VideoReader(video) as reader:
                clip = reader.get_frames(uniform_indices(len(reader), 16).tolist()).numpy()
            inputs = processor(text=prompt_ref, videos=[clip], return_tensors="pt").to(args.device)
            out = ref.generate(**inputs, **gen)
            assert out.shape[1] - inputs["input_ids"].shape[1] == tokens
            return int((inputs["input_ids"] == ref.config.video_token_index).sum())

        results = {}
        for name, fn in (("videolm PLLaVA", run_ours), ("transformers LlavaNextVideo", run_ref)):
            with torch.no_grad():
                n = fn()  # warm-up
                times = []
                for _ in range(args.repeats):
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    fn()
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
            results[name] = {"seconds": round(statistics.median(times), 4), "visual_tokens": n}
    print(f"caption one 16-frame {image_size}px video, {tokens} new tokens, device {args.device}, "
          f"threads {args.threads}, median of {args.repeats}")
    for name, r in results.items():
        print(f"  {name:28s} {r['seconds'] * 1000:8.1f} ms   visual tokens into the LLM: {r['visual_tokens']}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", required=True)
    p = sub.add_parser("pllava", help="PLLaVA vs transformers LlavaNextVideo: caption latency, visual tokens")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image-size", type=int, default=96, help="frame side; with --patch 4 a 24 x 24 grid")
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=bench_pllava)
    args = parser.parse_args()
    results = args.func(args)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
