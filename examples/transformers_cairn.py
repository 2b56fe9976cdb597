"""The Hugging Face Trainer with cairn's own callback: training arguments and model config, train
and eval metrics at their global step, and the final model as an artifact. A tiny BERT made from
a config, so nothing is downloaded. `pip install torch transformers accelerate`, then, with a
cairn server running:

    python examples/transformers_cairn.py
"""

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from cairn.integration.transformers import CairnCallback


class Data(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 64, (8,), generator=g), "labels": torch.tensor(i % 2)}


if __name__ == "__main__":
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
    args = TrainingArguments(output_dir="hf-out", report_to="none", run_name="bert-tiny", max_steps=8, logging_steps=1, per_device_train_batch_size=4,
                             eval_strategy="steps", eval_steps=4, save_strategy="no", learning_rate=1e-3, use_cpu=True, disable_tqdm=True)
    callback = CairnCallback(project="transformers-example", log_model="end")
    trainer = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Data(), eval_dataset=Data(), callbacks=[callback])
    trainer.train()
    import cairn

    print("RUN", cairn.run.id, flush=True)
