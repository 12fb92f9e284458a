"""LoRA fine-tuning of PLLaVA with the Lightning Trainer on instruction JSON (LLaVA and VideoChat2 layouts)."""

import json

import lightning.pytorch as pl
import torch

from videolm.data.instructions import InstructionDataModule, read_instructions
from videolm.models.common import Optim
from videolm.models.pllava import LoRA, PLLaVAConfig, PLLaVAModule


def test_read_both_layouts(tmp_path):
    llava = [{"id": "a", "video": "a.mp4", "conversations": [
        {"from": "human", "value": "<video>\nwhat colour?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "what shape?"}, {"from": "gpt", "value": "circle"}]}]
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    vc2 = [{"video": "b.mp4", "QA": [{"i": "Watch carefully.", "q": "what moves?", "a": "the circle"}]}]
    (tmp_path / "vc2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vc2))
    assert read_instructions(tmp_path / "llava.json") == [
        {"video": "a.mp4", "turns": [["what colour?", "red"], ["what shape?", "circle"]], "id": "a"}]
    assert read_instructions(tmp_path / "vc2.jsonl")[0]["turns"] == [["Watch carefully. what moves?", "the circle"]]


def test_lora_finetune_freezes_vision_and_base(tmp_path, tiny_llava):
    tok = tiny_llava(tmp_path, question=True)

    module = PLLaVAModule(PLLaVAConfig(pooling_shape=(4, 2, 2), num_frames=4), optim=Optim(lr=1e-2),
                          init_from=str(tmp_path / "llava"), lora=LoRA(r=4, alpha=8))
    assert module.hparams["config"]["llava"]["text_config"]["vocab_size"] == len(tok)  # the folder's architecture
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    data = InstructionDataModule(str(tmp_path / "train.json"), num_frames=4, image_size=32, batch_size=2,
                                 num_workers=0)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    after = module.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing trained"
    assert all("lora_" in k or k.startswith("multi_modal_projector.") for k in changed), sorted(changed)[:5]
    assert any("lora_B" in k for k in changed)
    assert not any(k.startswith("vision_tower.") for k in changed)
