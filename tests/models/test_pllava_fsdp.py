"""FSDP2 (Lightning's ModelParallelStrategy) on 2 CPU processes: a tiny PLLaVA with LoRA trains a few
steps sharded, saves a sharded checkpoint, and the consolidated checkpoint loads into an unsharded
model that gives the sharded model's outputs."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from videolm.models.pllava import LoRA, PLLaVAConfig, PLLaVAModule

SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.distributed.tensor import DTensor

    from videolm.data.instructions import InstructionDataModule
    from videolm.models.common import Optim
    from videolm.models.pllava import LoRA, PLLaVAConfig, PLLaVAModule

    root = Path(sys.argv[1])
    pl.seed_everything(0)
    module = PLLaVAModule(PLLaVAConfig(pooling_shape=(4, 2, 2), num_frames=4), optim=Optim(lr=1e-2),
                          init_from=str(root / "llava"), lora=LoRA(r=4, alpha=8), activation_checkpointing=True)
    data = InstructionDataModule(str(root / "train.json"), num_frames=4, image_size=32, batch_size=1, num_workers=0)
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    trainer.save_checkpoint(root / "sharded.ckpt")
    batch = torch.load(root / "batch.pt")
    module.eval()
    with torch.no_grad():
        logits = module.model(batch["input_ids"], batch["attention_mask"], video=batch["video"]).logits
    layer = module.model.language_model.base_model.model.model.layers[0].mlp.up_proj.weight
    if trainer.global_rank == 0:
        torch.save(logits, root / "sharded_logits.pt")
        (root / "shards.json").write_text(json.dumps({
            "dtensor": isinstance(layer, DTensor), "local": list(layer.to_local().shape),
            "full": list(layer.shape), "checkpointing": module.model.language_model.is_gradient_checkpointing,
            "loss": float(trainer.callback_metrics["train/loss"])}))
''')


@pytest.mark.slow
def test_fsdp_two_processes_train_save_and_reload_to_the_same_outputs(tmp_path, tiny_llava):
    tok = tiny_llava(tmp_path)
    ids = tok(["USER: <image> Describe the video. ASSISTANT:"], return_tensors="pt")
    batch = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"],
             "video": torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))}
    torch.save(batch, tmp_path / "batch.pt")
    (tmp_path / "run.py").write_text(SCRIPT)

    run = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    shards = json.loads((tmp_path / "shards.json").read_text())
    assert shards["dtensor"] and shards["local"][0] * 2 == shards["full"][0], shards  # half of each weight per rank
    assert shards["checkpointing"] and shards["loss"] == shards["loss"]  # finite
    assert (tmp_path / "sharded.ckpt").is_dir()  # one shard file per rank + metadata

    from videolm.models import consolidate_checkpoint, detect_method, load_module

    assert detect_method(tmp_path / "sharded.ckpt") == "pllava"
    full = consolidate_checkpoint(tmp_path / "sharded.ckpt", tmp_path / "full.ckpt")
    assert torch.load(full, weights_only=True)["global_step"] == 3
    logits = {}
    for path in (tmp_path / "sharded.ckpt", full):  # the folder itself (consolidated on the fly) and the file
        module = load_module(path)
        with torch.no_grad():
            logits[path] = module.model(batch["input_ids"], batch["attention_mask"], video=batch["video"]).logits
    assert torch.equal(logits[full], logits[tmp_path / "sharded.ckpt"])
    logits = logits[full]
    sharded = torch.load(tmp_path / "sharded_logits.pt")
    fresh = PLLaVAModule(PLLaVAConfig(pooling_shape=(4, 2, 2), num_frames=4), init_from=str(tmp_path / "llava"),
                         lora=LoRA(r=4, alpha=8)).eval()
    with torch.no_grad():
        untrained = fresh.model(batch["input_ids"], batch["attention_mask"], video=batch["video"]).logits
    assert torch.allclose(logits, sharded, atol=1e-5), (logits - sharded).abs().max()
    assert not torch.allclose(logits[:, -1], untrained[:, -1], atol=1e-3)  # it did train
