"""An embedded synthetic recommendation dataset that needs no download.

The generative story, all drawn from ``numpy.random.default_rng(seed)``:

* Items get a leaf of a fixed 4 x 3 x 3 category tree (``Beauty > Skincare >
  Serums``), a brand (each brand belongs to one top category and sells there
  with probability ``brand_loyalty``), a lognormal price around a per-leaf
  level, and a title made of the brand and words tied to the leaf and the top
  category, so text similarity follows semantic similarity.
* Items are split at random into ``n_groups`` collaborative co-purchase groups,
  so every group mixes top categories and similar items sit in different
  groups. Each group arranges its items in a random cycle.
* A user prefers one or two groups. From the last item the next one is, with
  probability ``p_popular``, a Zipf-popular item from anywhere; with
  ``p_switch``, an item of the user's other group (if any); otherwise a step in the
  last item's group: a group item of the same top category
  (``p_same_category``, a weak semantic signal), a uniform group item
  (``p_group_random``), or else the cycle successor (or, one time in five, the
  item after it). Sequential models can therefore beat popularity clearly.
* Sequence lengths are ``min_len`` plus a geometric draw, capped at
  ``max_len``; consecutive items never repeat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from bench.core.errors import ConfigError
from bench.core.options import parse_options as typed_options
from bench.data.dataset import RawData, RawItem

SKIP_SHARE = 0.2  # share of cycle steps that skip one item


# top category -> (base price, title adjectives, title variants); word lists are comma-separated
TOP_STYLE: dict[str, tuple[float, str, str]] = {
    "Beauty": (18.0, "Gentle, Radiant, Nourishing, Soothing, Natural", "30 ml, 50 ml, 100 ml, Travel Size"),
    "Electronics": (90.0, "Wireless, Smart, Compact, Premium, Portable", "Black, White, Silver, Pro, Mini"),
    "Home & Kitchen": (35.0, "Classic, Modern, Durable, Elegant, Everyday", "Set of 2, Large, Small, Family Size"),
    "Sports & Outdoors": (45.0, "Lightweight, Rugged, Adjustable, All-Weather, Performance",
                          "Blue, Red, Green, Orange, Grey"),
}


# top > cat2 > leaf -> (title nouns, title features)
CATEGORY_TREE: dict[str, dict[str, dict[str, tuple[str, str]]]] = {
    "Beauty": {
        "Skincare": {
            "Serums": ("Serum, Essence, Ampoule", "Vitamin C, Hyaluronic, Retinol, Niacinamide"),
            "Moisturizers": ("Moisturizer, Face Cream, Gel Cream", "Ceramide, Oil-Free, Night, SPF 30"),
            "Cleansers": ("Cleanser, Face Wash, Cleansing Foam", "Foaming, Micellar, Charcoal, Salicylic"),
        },
        "Makeup": {
            "Lipstick": ("Lipstick, Lip Color, Lip Stain", "Matte, Satin, Long-Wear, Nude"),
            "Foundation": ("Foundation, Tinted Base, Skin Tint", "Full Coverage, Dewy, Liquid, Light Beige"),
            "Mascara": ("Mascara, Lash Primer, Lash Serum", "Volumizing, Lengthening, Waterproof, Curling"),
        },
        "Hair Care": {
            "Shampoo": ("Shampoo, Hair Wash, Scalp Cleanser", "Clarifying, Sulfate-Free, Anti-Dandruff, Volume"),
            "Conditioner": ("Conditioner, Hair Mask, Detangler", "Repairing, Keratin, Leave-In, Smoothing"),
            "Hair Oil": ("Hair Oil, Hair Serum, Scalp Oil", "Argan, Coconut, Rosemary, Frizz Control"),
        },
    },
    "Electronics": {
        "Audio": {
            "Headphones": ("Headphones, Headset, Over-Ear Headphones", "Noise Cancelling, Bluetooth, Studio, Foldable"),
            "Speakers": ("Speaker, Soundbar, Bookshelf Speaker", "Waterproof, Bass Boost, Stereo, Party"),
            "Earbuds": ("Earbuds, In-Ear Buds, Earphones", "True Wireless, Sport, ANC, Low Latency"),
        },
        "Computers": {
            "Laptops": ("Laptop, Notebook, Ultrabook", "14-inch, Gaming, Touchscreen, 16GB RAM"),
            "Keyboards": ("Keyboard, Keypad, Keyboard Combo", "Mechanical, Backlit, Ergonomic, Low-Profile"),
            "Monitors": ("Monitor, Display, Screen", "27-inch, 4K, Curved, 144Hz"),
        },
        "Cameras": {
            "Action Cameras": ("Action Camera, Sports Cam, Helmet Camera", "4K60, Stabilized, Underwater, Dual Screen"),
            "Lenses": ("Lens, Prime Lens, Zoom Lens", "50mm, Wide-Angle, Telephoto, Macro"),
            "Tripods": ("Tripod, Monopod, Camera Stand", "Carbon Fiber, Travel, Ball Head, Flexible"),
        },
    },
    "Home & Kitchen": {
        "Cookware": {
            "Frying Pans": ("Frying Pan, Skillet, Saute Pan", "Nonstick, Cast Iron, Ceramic, Induction"),
            "Saucepans": ("Saucepan, Sauce Pot, Milk Pan", "Stainless Steel, Lidded, Copper, Tri-Ply"),
            "Dutch Ovens": ("Dutch Oven, Casserole, Cocotte", "Enameled, Round, Oval, 5-Quart"),
        },
        "Appliances": {
            "Blenders": ("Blender, Smoothie Maker, Food Processor", "High-Speed, Personal, Glass Jar, 1200W"),
            "Coffee Makers": ("Coffee Maker, Espresso Machine, Drip Brewer",
                              "Programmable, Single Serve, Pour-Over, Thermal"),
            "Toasters": ("Toaster, Toaster Oven, Sandwich Maker", "2-Slice, 4-Slice, Wide Slot, Convection"),
        },
        "Tableware": {
            "Plates": ("Dinner Plates, Plate Set, Side Plates", "Porcelain, Stoneware, Melamine, Rimmed"),
            "Mugs": ("Mug, Coffee Mug, Tea Cup", "Ceramic, Insulated, Handmade, 12 oz"),
            "Glasses": ("Drinking Glasses, Tumblers, Wine Glasses", "Crystal, Stemless, Highball, Shatterproof"),
        },
    },
    "Sports & Outdoors": {
        "Camping": {
            "Tents": ("Tent, Shelter, Dome Tent", "2-Person, Backpacking, Pop-Up, Waterproof"),
            "Sleeping Bags": ("Sleeping Bag, Quilt, Bag Liner", "Down, Mummy, 3-Season, Compact"),
            "Lanterns": ("Lantern, Camp Light, Headlamp", "LED, Rechargeable, Solar, Dimmable"),
        },
        "Fitness": {
            "Dumbbells": ("Dumbbells, Weight Set, Kettlebell", "Adjustable, Hex, Neoprene, 20 lb"),
            "Yoga Mats": ("Yoga Mat, Exercise Mat, Pilates Mat", "Non-Slip, Extra Thick, Cork, Foldable"),
            "Resistance Bands": ("Resistance Bands, Loop Bands, Pull-Up Band", "Fabric, Latex-Free, Heavy, 5-Pack"),
        },
        "Cycling": {
            "Helmets": ("Bike Helmet, Cycling Helmet, MTB Helmet", "MIPS, Aero, Ventilated, Commuter"),
            "Bike Lights": ("Bike Light, Tail Light, Light Set", "USB, 1000 Lumen, Smart Brake, Flashing"),
            "Water Bottles": ("Water Bottle, Bidon, Hydration Flask", "Squeeze, Insulated, BPA-Free, 750 ml"),
        },
    },
}


BRAND_HEADS = ["Aur", "Bel", "Cor", "Dal", "Eon", "Fen", "Gal", "Hal", "Ivo", "Jun", "Kor", "Lum",
               "Mar", "Nov", "Orl", "Pax", "Quin", "Ros", "Sol", "Tav", "Ulm", "Ver", "Wex", "Zen"]


BRAND_TAILS = ["a", "ex", "ora", "ion", "ix", "en", "ara", "o", "ent", "is"]


@dataclass
class SyntheticOptions:
    """Generator options and their defaults (keys of ``read_synthetic``'s ``options``)."""

    seed: int = 0
    n_items: int = 1200
    n_users: int = 3000
    n_groups: int = 40  # collaborative co-purchase groups
    n_brands: int = 60
    min_len: int = 5
    mean_len: float = 12.0  # before capping at max_len
    max_len: int = 30
    p_popular: float = 0.15  # next item: a Zipf-popular item from anywhere
    p_switch: float = 0.1  # next item: an item of the user's other group
    p_same_category: float = 0.1  # in-group step: a group item of the same top category
    p_group_random: float = 0.35  # in-group step: a uniform group item
    zipf_exponent: float = 1.0  # item popularity ~ 1 / rank ** zipf_exponent (at most 5)
    brand_loyalty: float = 0.9  # chance that an item's brand is from its top category


@dataclass
class SyntheticData:
    """The generated data plus the latent structure behind it (for tests and analysis)."""

    raw: RawData
    groups: dict[str, int]  # raw item id -> collaborative group
    options: SyntheticOptions


def parse_options(options: dict[str, Any]) -> SyntheticOptions:
    """Check ``options`` (text or typed) against ``SyntheticOptions``, type them and fill in defaults."""
    defaults = {f.name: f.default for f in fields(SyntheticOptions)}
    options = typed_options(options, defaults, "synthetic dataset option ", where="synthetic dataset")
    opts = SyntheticOptions(**options)
    problems = []
    if opts.n_groups < 2 or opts.n_items < 3 * opts.n_groups:
        problems.append("need n_groups >= 2 and n_items >= 3 * n_groups")
    if opts.n_users < 1 or opts.n_brands < 4 or opts.n_brands > len(BRAND_HEADS) * len(BRAND_TAILS):
        problems.append(f"need n_users >= 1 and 4 <= n_brands <= {len(BRAND_HEADS) * len(BRAND_TAILS)}")
    if not 2 <= opts.min_len <= opts.mean_len <= opts.max_len:
        problems.append("need 2 <= min_len <= mean_len <= max_len")
    probs = [opts.p_popular, opts.p_switch, opts.p_same_category, opts.p_group_random, opts.brand_loyalty]
    if any(not 0 <= p <= 1 for p in probs) or opts.p_popular + opts.p_switch > 1:
        problems.append("probabilities must lie in [0, 1], with p_popular + p_switch <= 1")
    if opts.p_same_category + opts.p_group_random > 1 or not 0 <= opts.zipf_exponent <= 5:
        problems.append("need p_same_category + p_group_random <= 1 and 0 <= zipf_exponent <= 5")
    if problems:
        raise ConfigError(f"synthetic dataset: invalid options ({'; '.join(problems)}); got {asdict(opts)}")
    return opts


def _leaves() -> list[tuple[str, str, str]]:
    """All (top, cat2, leaf) paths of the category tree, in a fixed order."""
    return [(top, mid, leaf) for top, mids in CATEGORY_TREE.items() for mid, leaves in mids.items() for leaf in leaves]


def _make_items(opts: SyntheticOptions, rng: np.random.Generator) -> tuple[list[RawItem], np.ndarray]:
    """Item metadata and each item's top-category index."""
    tops = list(CATEGORY_TREE)
    leaves = _leaves()
    names = [h + t for t in BRAND_TAILS for h in BRAND_HEADS][: opts.n_brands]
    brand_top = rng.permutation(np.arange(opts.n_brands) % len(tops))
    brands_of = [np.flatnonzero(brand_top == t) for t in range(len(tops))]
    leaf_price = rng.lognormal(0.0, 0.5, size=len(leaves))
    leaf_of = rng.integers(len(leaves), size=opts.n_items)
    item_top = np.array([tops.index(leaves[leaf][0]) for leaf in leaf_of], dtype=np.int64)

    def pick(words: str) -> str:
        """One word of a comma-separated list."""
        options = words.split(", ")
        return options[rng.integers(len(options))]

    items = []
    for leaf, top in zip(leaf_of, item_top):
        path = leaves[leaf]
        base, adjectives, variants = TOP_STYLE[path[0]]
        nouns, features = CATEGORY_TREE[path[0]][path[1]][path[2]]
        pool = brands_of[top] if rng.random() < opts.brand_loyalty else np.arange(opts.n_brands)
        brand = names[rng.choice(pool)]
        title = f"{brand} {pick(adjectives)} {pick(features)} {pick(nouns)}, {pick(variants)}"
        price = round(float(max(1.0, base * leaf_price[leaf] * rng.lognormal(0.0, 0.3))), 2)
        items.append(RawItem(title=title, brand=brand, categories=list(path), price=price))
    return items, item_top


def _sequence_lengths(opts: SyntheticOptions, rng: np.random.Generator) -> np.ndarray:
    """Lengths ``min_len`` + geometric extra, capped at ``max_len``."""
    extra = opts.mean_len - opts.min_len
    if extra <= 0:
        return np.full(opts.n_users, opts.min_len)
    return np.minimum(opts.min_len + rng.geometric(1.0 / (extra + 1.0), size=opts.n_users) - 1, opts.max_len)


def generate(options: dict[str, Any] | None = None) -> SyntheticData:
    """Generate the synthetic dataset described in the module docstring."""
    opts = parse_options(options or {})
    rng = np.random.default_rng(opts.seed)
    n = opts.n_items
    items, item_top = _make_items(opts, rng)

    group_of = rng.permutation(np.arange(n) % opts.n_groups)
    members = [rng.permutation(np.flatnonzero(group_of == g)) for g in range(opts.n_groups)]
    position = np.empty(n, dtype=np.int64)
    for ring in members:
        position[ring] = np.arange(len(ring))
    same_cat = []  # per item: the other items of its group in its top category
    for i in range(n):
        ring = members[group_of[i]]
        same_cat.append(ring[(item_top[ring] == item_top[i]) & (ring != i)])

    popularity = 1.0 / np.arange(1, n + 1) ** opts.zipf_exponent
    popularity = popularity[rng.permutation(n)]
    pop_cdf = np.cumsum(popularity) / popularity.sum()
    group_weight = 1.0 / np.sqrt(np.arange(1, opts.n_groups + 1))[rng.permutation(opts.n_groups)]
    group_weight /= group_weight.sum()

    def in_group(item: int, u: float) -> int:
        """One step inside ``item``'s group driven by the uniform ``u``."""
        ring = members[group_of[item]]
        if u < opts.p_same_category and len(same_cat[item]):
            return int(same_cat[item][int(u / opts.p_same_category * len(same_cat[item]))])
        u -= opts.p_same_category
        if 0 <= u < opts.p_group_random:
            return int(ring[int(u / opts.p_group_random * len(ring))])
        step = 2 if rng.random() < SKIP_SHARE else 1
        return int(ring[(position[item] + step) % len(ring)])

    def pick_in(group: int) -> int:
        """A popularity-weighted item of ``group``."""
        ring = members[group]
        weights = popularity[ring]
        return int(ring[np.searchsorted(np.cumsum(weights), rng.random() * weights.sum())])

    sequences: dict[str, list[str]] = {}
    for user, length in enumerate(_sequence_lengths(opts, rng), start=1):
        liked = rng.choice(opts.n_groups, size=1 + (rng.random() < 0.5), replace=False, p=group_weight)
        seq = [pick_in(int(liked[0]))]
        while len(seq) < length:
            last, kind, u = seq[-1], rng.random(), rng.random()
            if kind < opts.p_popular:
                nxt = min(int(np.searchsorted(pop_cdf, u)), n - 1)
            elif kind < opts.p_popular + opts.p_switch:
                others = [g for g in liked if g != group_of[last]]
                nxt = pick_in(int(others[0])) if others else in_group(last, u)
            else:
                nxt = in_group(last, u)
            if nxt != last:
                seq.append(nxt)
        sequences[str(user)] = [str(i + 1) for i in seq]

    item_ids = [str(i + 1) for i in range(n)]
    raw = RawData(sequences=sequences, items=dict(zip(item_ids, items)), item_order=item_ids)
    return SyntheticData(raw=raw, groups={iid: int(g) for iid, g in zip(item_ids, group_of)}, options=opts)


def read_synthetic(paths: dict, options: dict) -> RawData:
    """Reader for the ``synthetic`` dataset: ``paths`` is ignored, ``options`` are generator options.

    ``options`` is a recipe's ``[reader_options]`` table; see ``SyntheticOptions`` for the keys.
    """
    return generate(options).raw
