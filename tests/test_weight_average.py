"""Weight averaging (SWA) and the BatchNorm re-measurement that goes with it."""

import torch
from torch import nn

from mbm.weight_average import WeightAverage, recalibrate_batchnorm


def test_weight_average_is_the_mean_of_the_snapshots():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    snapshots = []
    average = None
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in model.parameters()])
        if average is None:
            average = WeightAverage(model)
        else:
            average.update(model)
    target = nn.Linear(3, 2)
    average.copy_to(target)
    for k, p in enumerate(target.parameters()):
        torch.testing.assert_close(p.detach(), torch.stack([s[k] for s in snapshots]).mean(0))
    # the live model keeps its own (last) weights
    torch.testing.assert_close(model.weight.detach(), snapshots[-1][0])


def test_recalibrate_batchnorm_measures_the_plain_average_over_batches():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(100.0)  # stale statistics of other weights
    batches = [torch.full((4, 1, 2, 2), float(v)) + torch.arange(4.0).view(4, 1, 1, 1) for v in (0, 10)]
    n = recalibrate_batchnorm(model, iter(batches))
    assert n == 1 and not model.training
    expected_mean = torch.stack([b.mean() for b in batches]).mean()  # 6.5: the mean of the batch means
    torch.testing.assert_close(model[1].running_mean, expected_mean.repeat(2))
    expected_var = torch.stack([b.var() for b in batches]).mean()  # unbiased variance per batch, averaged
    torch.testing.assert_close(model[1].running_var, expected_var.repeat(2))
    assert model[1].momentum == 0.1  # restored


def test_recalibrate_batchnorm_without_batchnorm_reads_nothing():
    def no_batches():
        raise AssertionError("batches must not be drawn")
        yield

    model = nn.Linear(2, 2).train()
    assert recalibrate_batchnorm(model, no_batches()) == 0 and not model.training
