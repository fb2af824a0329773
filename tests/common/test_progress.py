import io

from data_gen.common.progress import Progress


def test_progress_line_counts_from_the_resume_point_and_shows_the_note():
  out = io.StringIO()
  bar = Progress(100, "steps", start=40, stream=out, min_interval=0.0, width=10)
  bar.advance_to(70, "loss 1.2345")
  line = out.getvalue().split("\r")[-1]
  assert line.startswith("[#######---] 70/100 steps") and line.endswith("loss 1.2345")
  bar.close()
  assert out.getvalue().endswith("\n")


def test_disabled_progress_writes_nothing():
  out = io.StringIO()
  bar = Progress(10, stream=out, enabled=False)
  bar.update(10)
  bar.close()
  assert out.getvalue() == ""
