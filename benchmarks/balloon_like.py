"""A synthetic balloon-like dataset for the 512 px training benchmark (no download, no shared data).

Stands in for Matterport's balloon sample: 1-3 filled ellipses (class "balloon") of 5-22% of the image
side over a noisy sky gradient, one class, ``mrcnn.utils.Dataset`` interface.
"""

import numpy as np
from skimage.draw import ellipse

from mrcnn.utils import Dataset

MIN_VISIBLE_PIXELS = 64


class BalloonLikeDataset(Dataset):
    """Images uint8 [height, width, 3]; masks bool [height, width, n], class id 1 ("balloon").

    Overlaps: a later balloon covers the earlier ones, and a balloon left with fewer than
    MIN_VISIBLE_PIXELS visible pixels is dropped from the masks.
    """

    def load_balloons(self, count, height, width, seed=0):
        """Register ``count`` images; the same ``seed`` gives the same images and masks."""
        self.add_class("balloon", 1, "balloon")
        rng = np.random.default_rng(seed)
        for i in range(count):
            balloons = []
            for _ in range(rng.integers(1, 4)):
                ry, rx = rng.uniform(0.06, 0.22) * height, rng.uniform(0.05, 0.18) * width
                cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
                balloons.append((cy, cx, ry, rx, tuple(int(c) for c in rng.integers(40, 255, 3))))
            self.add_image(
                "balloon",
                image_id=i,
                path=None,
                height=height,
                width=width,
                balloons=balloons,
                noise_seed=int(rng.integers(2**31)),
            )

    def _visible_masks(self, info):
        masks = np.zeros((info["height"], info["width"], len(info["balloons"])), bool)
        for k, (cy, cx, ry, rx, _) in enumerate(info["balloons"]):
            rr, cc = ellipse(cy, cx, ry, rx, shape=masks.shape[:2])
            masks[rr, cc, :k] = False
            masks[rr, cc, k] = True
        return masks

    def load_image(self, image_id):
        info = self.image_info[image_id]
        height, width = info["height"], info["width"]
        rng = np.random.default_rng(info["noise_seed"])
        sky = np.linspace([120.0, 170.0, 230.0], [200.0, 220.0, 250.0], height)[:, None, :]
        image = np.broadcast_to(sky, (height, width, 3)) + rng.normal(0, 8, (height, width, 3))
        masks = self._visible_masks(info)
        for k, (*_, color) in enumerate(info["balloons"]):
            image[masks[..., k]] = color
        return np.clip(image, 0, 255).astype(np.uint8)

    def load_mask(self, image_id):
        masks = self._visible_masks(self.image_info[image_id])
        masks = masks[..., masks.sum(axis=(0, 1)) >= MIN_VISIBLE_PIXELS]
        return masks, np.ones(masks.shape[-1], np.int32)
