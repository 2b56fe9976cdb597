"""Lightning with cairn's own logger: hyperparameters, metrics at their global step, and the best
checkpoint as a model artifact. `pip install lightning`, then, with a cairn server running:

    python examples/lightning_cairn.py
"""

import lightning as L
import torch

from cairn.integration.lightning import CairnLogger


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


if __name__ == "__main__":
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)
    logger = CairnLogger(project="lightning-example", name="tiny", log_model=True)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=[checkpoints], log_every_n_steps=1, accelerator="cpu", enable_progress_bar=False)
    trainer.fit(Tiny(), loader, loader)
    print("RUN", logger.experiment.id, flush=True)
