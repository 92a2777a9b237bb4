"""Tests for finding image domains in folder trees and list files, aligning their classes and checking readability."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from dahash.errors import DataError
from dahash.images.datasets import (
    ImageDomain,
    align_image_domains,
    load_domain,
    load_image_list,
    resolve_domain_dir,
    scan_readable,
)
from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)



def _raises(fn: Callable[[], Any], start: Path | str, *phrases: str) -> str:
    """Assert fn raises a one-line DataError starting with start and containing every phrase."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(start)), message
    for phrase in phrases:
        assert phrase in message, message
    return message


def _img(path: Path, shade: int = 0, size: tuple[int, int] = (8, 8)) -> Path:
    """Write a small solid image at path (format from the extension), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 255 - shade, 40)).save(path)
    return path


def _tree(root: Path, domains: dict[str, dict[str, int]], prefix: str = "", ext: str = ".jpg") -> Path:
    """Build root/<domain>/<prefix><class>/<i>.<ext> with the given number of images per class."""
    for domain, classes in domains.items():
        for name, count in classes.items():
            folder = root / domain / prefix / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _img(folder / f"{i:04d}{ext}", shade=10 * i)
    return root


def _office_home(root: Path, real_world: str = "Real World") -> Path:
    classes = {"Alarm_Clock": 2, "Backpack": 3, "Bike": 1}
    return _tree(root, {"Art": classes, "Clipart": classes, "Product": classes, real_world: classes})


def _quiet(fn: Callable[[], Any]) -> Any:
    """Call fn and fail on any warning: well-formed trees load silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# --- Office-Home ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,folder", [("Art", "Art"), ("Ar", "Art"), ("ar", "Art"), ("ART", "Art"),
                                         ("Cl", "Clipart"), ("clipart", "Clipart"), ("Pr", "Product"),
                                         ("Rw", "Real World"), ("rw", "Real World"), ("Real World", "Real World"),
                                         ("Real_World", "Real World"), ("RealWorld", "Real World"),
                                         ("real-world", "Real World"), ("real world", "Real World")])
def test_office_home_names_short_codes_and_real_world_spellings(tmp_path: Path, name: str, folder: str) -> None:
    root = _office_home(tmp_path / "OfficeHome")
    assert resolve_domain_dir(root, name) == root / folder
    domain = _quiet(lambda: load_domain(root, name))
    assert domain.name == folder
    assert domain.root == root / folder
    assert domain.classes == ["Alarm_Clock", "Backpack", "Bike"]
    assert len(domain) == 6
    assert domain.labels.dtype == np.int64
    assert domain.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert domain.ids[:3] == ["Alarm_Clock/0000.jpg", "Alarm_Clock/0001.jpg", "Backpack/0000.jpg"]
    assert all(p.is_file() and p.is_absolute() for p in domain.paths)


@pytest.mark.parametrize("real_world", ["Real_World", "RealWorld", "real-world"])
@pytest.mark.parametrize("name", ["Rw", "Real World", "Real_World", "RealWorld", "real_world"])
def test_real_world_spellings_find_whichever_folder_exists(tmp_path: Path, real_world: str, name: str) -> None:
    root = _office_home(tmp_path, real_world=real_world)
    assert resolve_domain_dir(root, name) == root / real_world
    assert load_domain(root, name).name == real_world


def test_relative_root_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _office_home(tmp_path / "oh")
    monkeypatch.chdir(tmp_path)
    domain = load_domain("oh", "Cl")
    assert domain.root == tmp_path / "oh" / "Clipart"
    assert all(p.is_absolute() for p in domain.paths)


# --- Office-31 and Office-Caltech ---------------------------------------------------------------


def test_office31_descends_into_images(tmp_path: Path) -> None:
    classes = {"back_pack": 2, "bike": 1, "mug": 2}
    root = _tree(tmp_path / "office31", {"amazon": classes, "dslr": classes, "webcam": classes}, prefix="images")
    for name in ("A", "amazon", "Amazon", "a"):
        assert resolve_domain_dir(root, name) == root / "amazon" / "images"
    domain = _quiet(lambda: load_domain(root, "W"))
    assert domain.name == "webcam"
    assert domain.root == root / "webcam" / "images"
    assert domain.classes == ["back_pack", "bike", "mug"]
    assert domain.ids[0] == "back_pack/0000.jpg"
    assert len(domain) == 5


def test_office31_images_folder_is_kept_when_not_alone(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"amazon": {"images": 1, "mug": 1}})
    assert resolve_domain_dir(root, "A") == root / "amazon"
    assert load_domain(root, "A").classes == ["images", "mug"]


def test_lone_images_class_holding_files_is_not_descended(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"images": 2}})
    assert resolve_domain_dir(root, "dom") == root / "dom"
    domain = load_domain(root, "dom")
    assert domain.classes == ["images"] and len(domain) == 2


def test_office31_images_folder_with_junk_beside_it_is_descended(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dslr": {"mug": 1}}, prefix="images")
    (root / "dslr" / ".DS_Store").write_bytes(b"junk")
    (root / "dslr" / "README.txt").write_text("about")
    assert resolve_domain_dir(root, "D") == root / "dslr" / "images"


@pytest.mark.parametrize("caltech", ["caltech10", "caltech", "Caltech"])
@pytest.mark.parametrize("name", ["C", "c", "caltech", "caltech10", "Caltech10"])
def test_office_caltech_codes(tmp_path: Path, caltech: str, name: str) -> None:
    classes = {"backpack": 1, "mug": 2}
    root = _tree(tmp_path, {"amazon": classes, caltech: classes, "dslr": classes, "webcam": classes})
    assert resolve_domain_dir(root, name) == root / caltech
    assert len(load_domain(root, name)) == 3
    assert resolve_domain_dir(root, "D") == root / "dslr"


def test_folder_literally_named_like_a_code_wins(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"A": {"x": 1}, "amazon": {"x": 2}})
    assert resolve_domain_dir(root, "A") == root / "A"
    assert resolve_domain_dir(root, "a") == root / "A"
    assert resolve_domain_dir(root, "amazon") == root / "amazon"


def test_case_only_clash_is_ambiguous(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"amazon": {"x": 1}, "Amazon": {"x": 1}})
    assert resolve_domain_dir(root, "amazon") == root / "amazon"
    _raises(lambda: resolve_domain_dir(root, "AMAZON"), root, "ambiguous", "Amazon", "amazon")


# --- generic trees ------------------------------------------------------------------------------


def test_generic_tree_recursive_sorted_and_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _img(root / "sketch" / "zebra" / "b.png")
    _img(root / "sketch" / "zebra" / "a.JPG")
    _img(root / "sketch" / "zebra" / "sub" / "deeper" / "c.bmp")
    _img(root / "sketch" / "apple" / "x y.jpeg")
    _img(root / "sketch" / "apple" / "2019" / "z.webp")
    _img(root / "photo" / "apple" / "1.jpg")
    domain = _quiet(lambda: load_domain(root, "sketch"))
    assert domain.classes == ["apple", "zebra"]
    assert domain.ids == ["apple/2019/z.webp", "apple/x y.jpeg", "zebra/a.JPG", "zebra/b.png",
                          "zebra/sub/deeper/c.bmp"]
    assert domain.labels.tolist() == [0, 0, 1, 1, 1]
    again = load_domain(root, "SKETCH")
    assert again.ids == domain.ids and again.labels.tolist() == domain.labels.tolist()


def test_hidden_junk_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"cat": 2, "dog": 1}})
    cat = root / "dom" / "cat"
    (cat / ".DS_Store").write_bytes(b"\0\0")
    (cat / "Thumbs.db").write_bytes(b"\0")
    (cat / "desktop.ini").write_text("[x]")
    (cat / "notes.txt").write_text("hello")
    (cat / "labels.csv").write_text("a,b")
    _img(cat / ".hidden.jpg")
    _img(cat / ".thumbnails" / "t.jpg")  # hidden folder inside a class
    _img(root / "dom" / ".git" / "objects" / "x.png")  # hidden folder beside classes: not a class
    _img(root / "dom" / "__MACOSX" / "cat" / "y.jpg")  # archiver junk: not a class
    (root / "dom" / ".DS_Store").write_bytes(b"\0")
    _img(root / ".cache" / "a" / "b.jpg")  # hidden folder beside domains: not a domain
    domain = _quiet(lambda: load_domain(root, "dom"))
    assert domain.classes == ["cat", "dog"]
    assert domain.ids == ["cat/0000.jpg", "cat/0001.jpg", "dog/0000.jpg"]
    message = _raises(lambda: resolve_domain_dir(root, "zzz"), root)
    assert ".cache" not in message


def test_empty_class_is_kept_and_warns(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"a": 2, "c": 1}})
    (root / "dom" / "b").mkdir()
    (root / "dom" / "b" / "notes.txt").write_text("no images here")
    with pytest.warns(UserWarning, match=r"1 class folders have no images: b"):
        domain = load_domain(root, "dom")
    assert domain.classes == ["a", "b", "c"]
    assert domain.labels.tolist() == [0, 0, 2]
    assert domain.class_counts().tolist() == [2, 0, 1]


def test_images_outside_class_folders_warn(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"a": 1}})
    _img(root / "dom" / "stray.jpg")
    with pytest.warns(UserWarning, match="outside any class folder.*stray.jpg"):
        domain = load_domain(root, "dom")
    assert domain.ids == ["a/0000.jpg"]


def test_domain_without_images_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "dom" / "a").mkdir(parents=True)
    (root / "dom" / "b").mkdir(parents=True)
    (root / "dom" / "a" / "x.txt").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _raises(lambda: load_domain(root, "dom"), root / "dom", "no images", "2 class folders")


def test_domain_without_class_folders_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _img(root / "flat" / "a.jpg")
    _raises(lambda: load_domain(root, "flat"), root / "flat", "no class folders")


def test_unknown_domain_lists_the_domains_found(tmp_path: Path) -> None:
    root = _office_home(tmp_path)
    message = _raises(lambda: load_domain(root, "Sketch"), root, "no domain 'Sketch'",
                      "Art", "Clipart", "Product", "Real World")
    assert message.index("Art") < message.index("Clipart")


def test_unknown_domain_in_empty_root(tmp_path: Path) -> None:
    _raises(lambda: resolve_domain_dir(tmp_path, "A"), tmp_path, "domains found: none")


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    _raises(lambda: load_domain(tmp_path / "absent", "A"), tmp_path / "absent", "does not exist")
    (tmp_path / "file").write_text("x")
    _raises(lambda: load_domain(tmp_path / "file", "A"), tmp_path / "file", "not a folder")


def test_nested_domain_name_is_a_path(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"office31/amazon": {"mug": 1}}, prefix="images")
    assert resolve_domain_dir(tmp_path, "office31/amazon") == root / "office31" / "amazon" / "images"


# --- image lists --------------------------------------------------------------------------------


def test_image_list_int_labels_relative_to_list_folder(tmp_path: Path) -> None:
    _img(tmp_path / "imgs" / "a.jpg")
    _img(tmp_path / "imgs" / "b.jpg")
    _img(tmp_path / "imgs" / "c.jpg")
    lst = tmp_path / "amazon_list.txt"
    lst.write_text("imgs/a.jpg 0\nimgs/b.jpg 2\nimgs/c.jpg 0\n")
    domain = load_image_list(lst)
    assert domain.name == "amazon_list"
    assert domain.root == tmp_path
    assert domain.classes == ["0", "2"]
    assert domain.labels.tolist() == [0, 1, 0]
    assert domain.ids == ["imgs/a.jpg", "imgs/b.jpg", "imgs/c.jpg"]


def test_image_list_int_labels_sort_numerically(tmp_path: Path) -> None:
    for i in range(3):
        _img(tmp_path / f"{i}.png")
    lst = tmp_path / "l.txt"
    lst.write_text("0.png 10\n1.png 9\n2.png 1\n")
    domain = load_image_list(lst)
    assert domain.classes == ["1", "9", "10"]
    assert domain.labels.tolist() == [2, 1, 0]


def test_image_list_name_labels_spaces_comments_and_root(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _img(data / "Real World" / "Alarm Clock" / "0001 copy.jpg")
    _img(data / "Real World" / "Bike" / "b.jpg")
    _img(data / "Real World" / "Alarm Clock" / "c.jpg")
    lst = tmp_path / "lists" / "rw.txt"
    lst.parent.mkdir()
    lst.write_text("\ufeff# Office-Home Real World\n\n"
                   "Real World/Alarm Clock/0001 copy.jpg   Alarm_Clock\n"
                   "   \n"
                   "Real World/Bike/b.jpg\tBike\r\n"
                   "  # indented comment\n"
                   "Real World/Alarm Clock/c.jpg Alarm_Clock  \n", encoding="utf-8")
    domain = load_image_list(lst, root=data)
    assert domain.root == data
    assert domain.classes == ["Alarm_Clock", "Bike"]
    assert domain.labels.tolist() == [0, 1, 0]
    assert domain.ids[0] == "Real World/Alarm Clock/0001 copy.jpg"


def test_image_list_absolute_paths(tmp_path: Path) -> None:
    elsewhere = _img(tmp_path / "elsewhere" / "x.jpg")
    lst = tmp_path / "lists" / "l.txt"
    lst.parent.mkdir()
    lst.write_text(f"{elsewhere} 0\n")
    domain = load_image_list(lst)
    assert domain.paths == [elsewhere]
    assert domain.ids == [elsewhere.as_posix()]


def test_image_list_with_explicit_classes(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    _img(tmp_path / "b.jpg")
    lst = tmp_path / "l.txt"
    lst.write_text("a.jpg 2\nb.jpg mug\n")
    domain = load_image_list(lst, classes=["bike", "mug", "pen"])
    assert domain.classes == ["bike", "mug", "pen"]
    assert domain.labels.tolist() == [2, 1]
    _raises(lambda: load_image_list(lst, classes=["bike", "mug"]), lst, "line 1", "'2'")


def test_image_list_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    lst = tmp_path / "l.txt"
    lst.write_text("# header\na.jpg 0\njust_a_path.jpg\n")
    _raises(lambda: load_image_list(lst), lst, "line 3", "expected '<image path> <label>'")


def test_image_list_path_with_space_and_no_label(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("my dir/a.jpg\n")
    _raises(lambda: load_image_list(lst), lst, "line 1", "no label")


def test_image_list_negative_and_mixed_labels(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    _img(tmp_path / "b.jpg")
    lst = tmp_path / "l.txt"
    lst.write_text("a.jpg 0\nb.jpg -1\n")
    _raises(lambda: load_image_list(lst), lst, "line 2", "negative")
    lst.write_text("a.jpg 0\nb.jpg bike\n")
    _raises(lambda: load_image_list(lst), lst, "line 2", "'bike'", "line 1")


def test_image_list_missing_files_named(tmp_path: Path) -> None:
    _img(tmp_path / "present.jpg")
    lst = tmp_path / "l.txt"
    lst.write_text("present.jpg 0\n" + "".join(f"gone{i}.jpg 1\n" for i in range(6)))
    message = _raises(lambda: load_image_list(lst), lst, "6 of 7 listed images do not exist",
                      str(tmp_path / "gone0.jpg"), "line 2", "gone2.jpg", "(and 3 more)",
                      f"resolved against {tmp_path}")
    assert "gone5.jpg" not in message


def test_image_list_empty_and_absent(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("# nothing\n\n")
    _raises(lambda: load_image_list(lst), lst, "no entries")
    _raises(lambda: load_image_list(tmp_path / "nope.txt"), tmp_path / "nope.txt", "does not exist")


# --- ImageDomain --------------------------------------------------------------------------------


def test_image_domain_checks_labels_and_classes(tmp_path: Path) -> None:
    _raises(lambda: ImageDomain("d", tmp_path, [tmp_path / "a.jpg"], np.array([1]), ["x"]), tmp_path, "outside")
    _raises(lambda: ImageDomain("d", tmp_path, [tmp_path / "a.jpg"], np.array([0, 0]), ["x"]), tmp_path,
            "1 paths but 2 labels")
    _raises(lambda: ImageDomain("d", tmp_path, [], np.array([]), ["x", "x"]), tmp_path, "repeats", "x")
    domain = ImageDomain("d", str(tmp_path), [str(tmp_path / "a.jpg")], [0], ["x"])
    assert domain.labels.dtype == np.int64 and domain.root == tmp_path and domain.ids == ["a.jpg"]


def test_subset_keeps_classes(tmp_path: Path) -> None:
    domain = ImageDomain("d", tmp_path, [tmp_path / f"{i}.jpg" for i in range(4)], [0, 1, 1, 2], ["a", "b", "c"])
    part = domain.subset([1, 3])
    assert part.classes == ["a", "b", "c"] and part.labels.tolist() == [1, 2] and part.ids == ["1.jpg", "3.jpg"]


# --- aligning -----------------------------------------------------------------------------------


def test_align_reindexes_target_by_class_name(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"src": {"apple": 1, "bike": 1, "cat": 1}, "tgt": {"cat": 2, "apple": 1}})
    source, target = load_domain(root, "src"), load_domain(root, "tgt")
    assert target.classes == ["apple", "cat"]
    src2, tgt2 = align_image_domains(source, target)
    assert src2 is source
    assert tgt2.classes == ["apple", "bike", "cat"]
    assert tgt2.labels.tolist() == [0, 2, 2]
    assert tgt2.ids == target.ids
    assert target.classes == ["apple", "cat"]  # the input is left alone


def test_align_int_lists_by_class_name(tmp_path: Path) -> None:
    for i in range(3):
        _img(tmp_path / f"{i}.jpg")
    src = tmp_path / "s.txt"
    src.write_text("0.jpg 0\n1.jpg 1\n2.jpg 2\n")
    tgt = tmp_path / "t.txt"
    tgt.write_text("0.jpg 2\n1.jpg 2\n")
    _, target = align_image_domains(load_image_list(src), load_image_list(tgt))
    assert target.labels.tolist() == [2, 2]


def test_align_target_class_missing_from_source(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"src": {"apple": 1}, "tgt": {"apple": 1, "zebra": 1, "yak": 1}})
    _raises(lambda: align_image_domains(load_domain(root, "src"), load_domain(root, "tgt")), root / "tgt",
            "2 classes missing from source domain 'src'", "yak", "zebra")


def test_align_ignores_empty_target_class_missing_from_source(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"src": {"apple": 1}, "tgt": {"apple": 1}})
    (root / "tgt" / "zebra").mkdir()
    with pytest.warns(UserWarning):
        target = load_domain(root, "tgt")
    _, aligned = align_image_domains(load_domain(root, "src"), target)
    assert aligned.classes == ["apple"] and aligned.labels.tolist() == [0]


def test_align_source_class_without_images(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"src": {"apple": 1}, "tgt": {"apple": 1, "bike": 1}})
    (root / "src" / "bike").mkdir()
    with pytest.warns(UserWarning, match="bike"):
        source = load_domain(root, "src")
    _raises(lambda: align_image_domains(source, load_domain(root, "tgt")), root / "src",
            "source domain 'src'", "no images for 1 classes", "bike", "every source class")


# --- scan_readable ------------------------------------------------------------------------------


def test_scan_readable_drops_unreadable_files(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"a": 2, "b": 1}})
    bad = root / "dom" / "a" / "0000.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    domain = load_domain(root, "dom")
    clean, failures = scan_readable(domain)
    assert clean.ids == ["a/0001.jpg", "b/0000.jpg"]
    assert clean.labels.tolist() == [0, 1]
    assert clean.classes == domain.classes
    assert len(failures) == 1 and failures[0][0] == bad
    assert isinstance(failures[0][1], str) and "\n" not in failures[0][1]
    assert len(domain) == 3  # the input is left alone


def test_scan_readable_with_progress(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"dom": {"a": 1}})
    clean, failures = scan_readable(load_domain(root, "dom"), progress=True)
    assert len(clean) == 1 and failures == []


# --- the real Office-Caltech-10 copy --------------------------------------------------------------


@pytest.mark.skipif(not OFFICE_CALTECH.is_dir(), reason=f"Office-Caltech-10 is not at {OFFICE_CALTECH}")
def test_office_caltech_10_real_copy() -> None:
    webcam = _quiet(lambda: load_domain(OFFICE_CALTECH, "W"))
    caltech = _quiet(lambda: load_domain(OFFICE_CALTECH, "C"))
    assert (len(webcam), len(caltech)) == (295, 1123)
    assert webcam.name == "webcam" and caltech.name == "caltech10"
    assert len(webcam.classes) == len(caltech.classes) == 10
    assert webcam.classes == caltech.classes
    assert (webcam.class_counts() > 0).all() and (caltech.class_counts() > 0).all()
    _, aligned = align_image_domains(webcam, caltech)
    assert aligned.labels.tolist() == caltech.labels.tolist()
