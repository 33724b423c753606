import numpy as np
import pytest
import torch

from course_utils.data import (
    COLOURS,
    RELATIONS,
    SHAPES,
    Tokenizer,
    all_words,
    caption_for,
    position_name,
    relation_holds,
    render_shapes,
    to_float,
)


def test_images_have_the_stated_shape_and_dtype():
    batch = render_shapes(7, seed=0)
    assert batch.images.shape == (7, 3, 32, 32) and batch.images.dtype == torch.uint8
    assert len(batch.captions) == len(batch.records) == len(batch) == 7
    assert render_shapes(3, seed=0, size=64).images.shape == (3, 3, 64, 64)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not():
    a, b, c = render_shapes(50, seed=3), render_shapes(50, seed=3), render_shapes(50, seed=4)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.records == b.records
    assert not torch.equal(a.images, c.images)


def test_captions_agree_with_records():
    batch = render_shapes(300, seed=1)
    for caption, record in zip(batch.captions, batch.records):
        assert caption == caption_for(record)
        objs = record["objects"]
        if record["mode"] == "single":
            o = objs[0]
            assert caption.split() == ["a", o["size"], o["colour"], o["shape"], "in", "the",
                                       *position_name(o["row"], o["col"]).split()]
        else:
            a, b = objs
            assert (a["row"], a["col"]) != (b["row"], b["col"])
            assert record["relation"] in RELATIONS and relation_holds(record["relation"], a, b)
            assert caption.endswith(f"{b['colour']} {b['shape']}") and f"{a['colour']} {a['shape']}" in caption


def test_each_object_is_drawn_in_its_colour_at_its_position():
    batch = render_shapes(200, seed=2)
    for image, record in zip(batch.images, batch.records):
        for o in record["objects"]:
            pixel = image[:, int(o["y"]), int(o["x"])].tolist()
            assert pixel == list(COLOURS[o["colour"]]), (record, pixel)
            assert int(o["x"] // (32 / 3)) == o["col"] and int(o["y"] // (32 / 3)) == o["row"]


def test_edges_are_anti_aliased_and_background_is_plain():
    image = render_shapes(1, seed=0, mode="single").images[0]
    values = {tuple(image[:, y, x].tolist()) for y in range(32) for x in range(32)}
    assert len(values) > 3  # background, fill colour, and blended edge pixels
    assert image[:, 0, 0].tolist() == [24, 24, 32]


def test_dataset_covers_the_grammar():
    batch = render_shapes(2000, seed=5)
    objects = [o for r in batch.records for o in r["objects"]]
    assert {o["shape"] for o in objects} == set(SHAPES)
    assert {o["colour"] for o in objects} == set(COLOURS)
    assert {o["size"] for o in objects} == {"small", "large"}
    assert {(o["row"], o["col"]) for o in objects} == {(r, c) for r in range(3) for c in range(3)}
    assert {len(r["objects"]) for r in batch.records} == {1, 2}
    assert {r["relation"] for r in batch.records if r["relation"]} == set(RELATIONS)


def test_pair_mode_places_identical_objects_at_mirrored_positions():
    batch = render_shapes(100, seed=6, mode="pair")
    for caption, record in zip(batch.captions, batch.records):
        a, b = record["objects"]
        assert (a["shape"], a["colour"], a["size"]) == (b["shape"], b["colour"], b["size"])
        assert (a["row"] + b["row"], a["col"] + b["col"]) == (2, 2) and (a["row"], a["col"]) != (1, 1)
        assert caption == f"two {a['size']} {a['colour']} {a['shape']}s"


def test_twins_mode_places_identical_objects_at_two_cells_at_every_distance():
    batch = render_shapes(300, seed=6, mode="twins")
    squared = set()
    for caption, record in zip(batch.captions, batch.records):
        a, b = record["objects"]
        assert (a["shape"], a["colour"], a["size"]) == (b["shape"], b["colour"], b["size"])
        assert (a["row"], a["col"]) != (b["row"], b["col"])
        assert caption == f"two {a['size']} {a['colour']} {a['shape']}s"
        squared.add((a["row"] - b["row"]) ** 2 + (a["col"] - b["col"]) ** 2)
    assert squared == {1, 2, 4, 5, 8}  # neighbours, diagonal neighbours, ... opposite corners


def test_64_pixel_images_keep_the_object_scale():
    small = render_shapes(200, seed=7, size=32, mode="single").images
    large = render_shapes(200, seed=7, size=64, mode="single").images
    background = torch.tensor([24, 24, 32]).view(1, 3, 1, 1)
    area32 = (small != background).any(1).float().sum((1, 2))
    area64 = (large != background).any(1).float().sum((1, 2))
    assert torch.allclose(area32.mean(), area64.mean(), rtol=0.1)


def test_float_conversion_round_trips():
    images = render_shapes(4, seed=0).images
    floats = to_float(images)
    assert floats.min() >= -1 and floats.max() <= 1 and floats.dtype == torch.float32
    assert torch.equal(((floats + 1) * 127.5).round().to(torch.uint8), images)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_n_is_a_clear_error(n):
    with pytest.raises(ValueError, match="positive integer"):
        render_shapes(n, seed=0)


@pytest.mark.parametrize("size", [0, 24, 33, 100])
def test_size_not_a_multiple_of_16_is_a_clear_error(size):
    with pytest.raises(ValueError, match="multiple of 16"):
        render_shapes(2, seed=0, size=size)


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="mode must be one of"):
        render_shapes(2, seed=0, mode="triple")


# ---- tokenizer -------------------------------------------------------------------------------


def test_every_caption_tokenizes_and_round_trips():
    tok = Tokenizer()
    captions = render_shapes(500, seed=8).captions + render_shapes(50, seed=8, mode="pair").captions
    ids, mask = tok.encode(captions)
    assert ids.shape == mask.shape == (len(captions), tok.max_len)
    assert tok.decode(ids) == captions
    assert torch.equal(mask.sum(1), torch.tensor([len(c.split()) for c in captions]))
    assert not ids[~mask].any()


def test_tokenizer_vocabulary_is_fixed_and_complete():
    tok = Tokenizer()
    assert tok.vocab[0] == "<pad>" and len(tok) == len(set(tok.vocab)) == 1 + len(all_words())
    assert Tokenizer().vocab == tok.vocab


def test_unknown_word_names_the_word_and_lists_valid_words():
    with pytest.raises(ValueError, match=r"unknown word 'hexagon'.*valid words are: .*circle"):
        Tokenizer().encode(["a red hexagon"])


def test_too_long_caption_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 12"):
        Tokenizer().encode(" ".join(["red"] * 13))


def test_encode_is_case_and_space_tolerant():
    tok = Tokenizer()
    a, _ = tok.encode("A  Red circle")
    b, _ = tok.encode("a red circle")
    assert torch.equal(a, b)


def test_generator_does_not_touch_global_rng_state():
    np.random.seed(0)
    before = np.random.rand()
    np.random.seed(0)
    render_shapes(10, seed=1)
    assert np.random.rand() == before
