"""A model whose classes are not FER-2013's seven (FER+'s eight, with contempt) goes through every
path: analyze (JSON, CSV, annotated image), video (timeline, summary), the service, and evaluate and
calibrate on FER+ majority labels.

The model is a real ONNX file with the package's format, made here from an untrained vgg-s whose
last bias is raised for contempt, so every face must come out as contempt: the test then sees the
eighth class reach each output, rather than trusting the class list alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import need_shared, run_cli, synthetic_faces, write_fer_csv, write_ferplus

from facial_emotion.labels import FERPLUS_8_CLASSES

torch = pytest.importorskip("torch", reason="making the 8-class model file needs the [train] extra")


@pytest.fixture(scope="module")
def eight_class_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facial_emotion.model_file import make_metadata, write_model
    from facial_emotion.training.export import onnx_bytes
    from facial_emotion.training.nets import create_model

    torch.manual_seed(0)
    net = create_model("vgg-s", num_classes=8).eval()
    with torch.no_grad():
        net.head[-1].bias[FERPLUS_8_CLASSES.index("contempt")] = 50.0
    path = tmp_path_factory.mktemp("model") / "ferplus8.onnx"
    meta = make_metadata(classes=list(FERPLUS_8_CLASSES), arch="vgg-s", labels="ferplus8")
    write_model(path, onnx_bytes(net, 40), meta)
    return path


def test_analyze_json_csv_and_annotated_image(eight_class_model: Path, tmp_path: Path) -> None:
    photo = need_shared("media", "two_people.jpg")
    proc = run_cli("analyze", str(photo), "--model", str(eight_class_model), "--json")
    assert proc.returncode == 0, proc.stderr
    faces = json.loads(proc.stdout)[0]["faces"]
    assert len(faces) == 2
    for face in faces:
        assert face["emotion"] == "contempt"
        assert list(face["scores"]) == list(FERPLUS_8_CLASSES)
        assert sum(face["scores"].values()) == pytest.approx(1, abs=1e-3)
    table, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    proc = run_cli(
        "analyze",
        str(photo),
        "--model",
        str(eight_class_model),
        "--csv",
        str(table),
        "--annotate",
        str(annotated),
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 and all(float(r["contempt"]) > 0.99 for r in rows)
    copies = list(annotated.iterdir())
    assert len(copies) == 1 and cv2.imread(str(copies[0])) is not None


def test_video_timeline_and_summary(eight_class_model: Path, tmp_path: Path) -> None:
    video = need_shared("media", "woman2.mp4")
    timeline = tmp_path / "timeline.csv"
    proc = run_cli(
        "video",
        str(video),
        "--every",
        "10",
        "--model",
        str(eight_class_model),
        "--timeline",
        str(timeline),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rows = list(csv.DictReader(timeline.open()))
    assert rows and {r["emotion"] for r in rows} == {"contempt"}
    assert "contempt" in rows[0] and all(f["share"]["contempt"] > 0.99 for f in doc["faces"])


def test_service_answers_with_eight_classes(eight_class_model: Path) -> None:
    pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
    httpx = pytest.importorskip("httpx")
    from facial_emotion.service import create_app
    from facial_emotion.service.background import BackgroundServer

    photo = need_shared("media", "two_people.jpg")
    app = create_app(model=str(eight_class_model))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        card = client.get("/v1/model").json()
        assert card["classes"] == list(FERPLUS_8_CLASSES) and "contempt" in card["colors"]
        r = client.post("/v1/analyze", files={"file": ("p.jpg", photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert len(faces) == 2 and {f["emotion"] for f in faces} == {"contempt"}


def test_evaluate_scores_ferplus_majority_labels(eight_class_model: Path, tmp_path: Path) -> None:
    images, labels = synthetic_faces(40)
    usages = ["Training"] * 20 + ["PublicTest"] * 20
    data = write_fer_csv(tmp_path / "fer2013.csv", images, labels, usages)
    write_ferplus(tmp_path / "fer2013new.csv", 40, usages)
    proc = run_cli(
        "evaluate",
        "--data",
        str(data),
        "--split",
        "PublicTest",
        "--labels",
        "ferplus",
        "--json",
        "--model",
        str(eight_class_model),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["labels"] == "ferplus" and list(result["per_class"]) == list(FERPLUS_8_CLASSES)
    # Every face is called contempt: right exactly where contempt won the vote.
    from facial_emotion.data import load_dataset

    truth = load_dataset(data, labels="ferplus", ferplus_classes=8).select_split("PublicTest").labels
    assert result["accuracy"] == pytest.approx(np.mean(truth == FERPLUS_8_CLASSES.index("contempt")))
    assert "ece" in result  # scored on all eight classes, so calibration figures apply
    # and it is calibrated on the FER+ majority labels (its default for eight classes); 20 faces are
    # too few for a bias per class, so one temperature
    out = tmp_path / "calibrated.onnx"
    proc = run_cli("calibrate", str(eight_class_model), "--data", str(data), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)
    assert entry["faces"] == len(truth) and entry["method"] == "temperature scaling (NLL)"
    assert len(entry["scale"]) == len(entry["bias_tta"]) == 8


def test_evaluate_against_a_seven_class_model_on_ferplus_labels_says_they_score_other_faces(
    eight_class_model: Path, tmp_path: Path
) -> None:
    """Under FER+ labels a 7-class model reads the votes without contempt's and leaves out the faces
    only contempt was voted for: there is no paired comparison of different faces, and that is said
    before either model is run."""
    images, labels = synthetic_faces(20)
    data = write_fer_csv(tmp_path / "fer2013.csv", images, labels, ["PublicTest"] * 20)
    write_ferplus(tmp_path / "fer2013new.csv", 20, ["PublicTest"] * 20)
    args = ["evaluate", "--data", str(data), "--labels", "ferplus", "--model", str(eight_class_model)]
    proc = run_cli(*args, "--against", "fast")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "ferplus8.onnx and emotion-fast.onnx have 8 and 7 classes" in proc.stderr
    assert "compare models with the same classes" in proc.stderr
    # under FER-2013's labels both are scored on the same faces (the 8-class model by its most likely
    # of the seven): paired
    proc = run_cli(
        "evaluate", "--data", str(data), "--model", str(eight_class_model), "--against", "fast", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["against"]["n"] == 20


def test_evaluate_against_seven_labels_says_why_it_has_no_confidence_figures(
    eight_class_model: Path, tmp_path: Path
) -> None:
    """The figures were silently missing, and a report folder kept the last model's reliability
    diagram beside this one's report."""
    images, labels = synthetic_faces(60)
    labels[labels == 1] = 0  # no disgust faces at all: its row is no measurement
    data = write_fer_csv(tmp_path / "fer2013.csv", images, labels, ["PublicTest"] * 60)
    report = tmp_path / "report"
    proc = run_cli("evaluate", "--data", str(data), "--model", "fast", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert (
        "FER-2013 labels, emotion-fast.onnx, centre crop" in proc.stdout and "confidence: ECE" in proc.stdout
    )
    assert "no faces of disgust in this split" in proc.stdout and "(over the classes present)" in proc.stdout
    disgust = next(line for line in proc.stdout.splitlines() if line.startswith("disgust"))
    assert disgust.split()[2:4] == ["—", "—"]
    assert (report / "reliability.png").is_file()
    proc = run_cli(
        "evaluate", "--data", str(data), "--model", str(eight_class_model), "--json", "--report", str(report)
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ece"] is None and result["nll"] is None and "8 classes" in result["confidence_note"]
    assert result["classes_without_faces"] == ["disgust"]
    assert not (report / "reliability.png").exists()  # the fast model's, gone with its report
    markdown = (report / "report.md").read_text()
    assert "8 classes" in markdown and "| disgust |" in markdown and "](mistakes.png)" in markdown
    assert json.loads((report / "report.json").read_text()) == result


def test_quantize_measures_an_eight_class_model_on_ferplus_labels(
    eight_class_model: Path, tmp_path: Path
) -> None:
    """It scored the model against FER-2013's seven labels, which have no raw-softmax accuracy for
    eight classes: a KeyError after the quantization."""
    pytest.importorskip("onnx")
    from facial_emotion.training.quantize import quantize_model

    images, labels = synthetic_faces(100)
    usages = ["Training"] * 80 + ["PublicTest"] * 20
    data = write_fer_csv(tmp_path / "fer2013.csv", images, labels, usages)
    write_ferplus(tmp_path / "fer2013new.csv", 100, usages)
    meta = quantize_model(eight_class_model, tmp_path / "q.onnx", data, faces=64)
    accuracy = meta["quantized"]["accuracy"]
    assert (
        accuracy["labels"] == "ferplus" and 0 <= accuracy["after"] <= 1 and accuracy["split"] == "PublicTest"
    )
    # without FER+ votes beside the data: said before quantizing (it failed after, nothing written)
    (tmp_path / "fer2013new.csv").unlink()
    from facial_emotion.data import DatasetError

    with pytest.raises(DatasetError, match="or --eval-split none"):
        quantize_model(eight_class_model, tmp_path / "q2.onnx", data, faces=64)
    assert quantize_model(eight_class_model, tmp_path / "q3.onnx", data, faces=64, eval_split="none")


def test_finetune_reads_and_keeps_the_eighth_class(eight_class_model: Path, tmp_path: Path) -> None:
    """`correct --emotion contempt` saves to contempt/ for an 8-class model: finetune dropped that
    folder ("not an emotion's name") and trained a 7-class net from the 8-class base."""
    images, labels = synthetic_faces(60, seed=4)
    fb = tmp_path / "fb"
    for i, image in enumerate(images[:15]):
        emotion = ("contempt", "neutral", "happy")[i % 3]
        (fb / emotion).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(fb / emotion / f"{i}.png"), image)
    (fb / "Contempt").mkdir()  # any case, as correct's --emotion takes it; one folder per class
    cv2.imwrite(str(fb / "Contempt" / "extra.png"), images[20])
    fer = write_fer_csv(
        tmp_path / "fer.csv", images[15:], labels[15:], ["Training"] * 30 + ["PublicTest"] * 15
    )
    out = tmp_path / "mine8.onnx"
    args = ["finetune", "--feedback", str(fb), "--base", str(eight_class_model), "--out", str(out)]
    proc = run_cli(*args, "--fer2013", str(fer), "--mix", "30", "--epochs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "16 corrections (happy 5, neutral 5, contempt 6)" in proc.stdout and "not read" not in proc.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["classes"] == list(FERPLUS_8_CLASSES)
    assert meta["finetune"]["per_emotion"] == {"happy": 5, "neutral": 5, "contempt": 6}
    assert meta["finetune"]["before"]["PublicTest"]["n"] == 15  # FER-2013's seven labels: the first 7 outputs
