//! Headless Chromium for the status page tests: the flags a container needs, one run killed
//! with its process group after [`CHROMIUM_TIMEOUT`], a screenshot, and a measurement of the
//! page's layout at a given window width (the page's own scroll width and client width, where
//! each column of the targets table lies, and which elements reach past the right edge).
//!
//! The page has no scripts (and must not), so the measurement runs on a copy of the served page
//! with one measuring script appended, loaded from a file: the page loads nothing else, so the
//! copy lays out exactly as the served page does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// How long one Chromium run may take before it is killed.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags every Chromium run needs in a container: no sandbox (root, no user namespaces), no
/// GPU, no /dev/shm (often 64 MB in containers), a throwaway profile, nothing fetched in the
/// background, and no scroll bars (so the client width is the window width).
fn chromium_flags(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--metrics-recording-only".into(),
        "--mute-audio".into(),
        "--hide-scrollbars".into(),
    ]
}

/// The Chromium binary: `TEEWATCH_CHROMIUM` when set, else `chromium` on `PATH`. Panics with the
/// install command when there is none.
pub fn chromium() -> PathBuf {
    let program = std::env::var("TEEWATCH_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    common::tool::tool(&program, "apt-get install -y chromium")
}

/// What one Chromium run printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Runs Chromium with `args` in its own process group, killing the whole group after
/// [`CHROMIUM_TIMEOUT`]. Blocking: call it from `spawn_blocking`.
pub fn run_chromium(binary: &Path, dir: &Path, tag: &str, args: &[String]) -> Output {
    use std::os::unix::process::CommandExt;
    let profile = dir.join(format!("chromium-profile-{tag}"));
    let stdout_path = dir.join(format!("chromium-{tag}.stdout"));
    let stderr_path = dir.join(format!("chromium-{tag}.stderr"));
    let mut command = Command::new(binary);
    command
        .args(chromium_flags(&profile))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            // The group is the browser and every helper process it started.
            common::process::signal_group(child.id(), "KILL");
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {args:?} did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = Output {
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "chromium {args:?} exited with {status}; stderr:\n{}",
        output.stderr
    );
    eprintln!(
        "chromium {} took {:.1} s",
        args.first().map(String::as_str).unwrap_or(""),
        started.elapsed().as_secs_f64()
    );
    output
}

/// Writes a `width`×800 screenshot of `url` to `name` in the target directory (under
/// `CARGO_TARGET_DIR` when set) and checks that it is a PNG of some substance. Blocking.
pub fn screenshot(binary: &Path, dir: &Path, url: &str, width: u32, name: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_path("target"));
    std::fs::create_dir_all(&target_dir).unwrap();
    let png = target_dir.join(name);
    let _ = std::fs::remove_file(&png);
    let output = run_chromium(
        binary,
        dir,
        name,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},800"),
            url.to_string(),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}; stderr:\n{}",
            png.display(),
            output.stderr
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 10 * 1024,
        "{} is only {} bytes",
        png.display(),
        bytes.len()
    );
    println!(
        "status page screenshot: {} ({} bytes)",
        png.display(),
        bytes.len()
    );
    eprintln!("status page screenshot: {}", png.display());
    png
}

/// Appended to the page: measures the layout once it is done and writes the result into the
/// document as JSON, where `--dump-dom` prints it. Elements inside the closed `<details>` have
/// no box and do not count.
const MEASURE: &str = r##"<script>(function () {
  var root = document.documentElement, edge = root.clientWidth, past = [];
  var all = document.querySelectorAll("body *");
  for (var i = 0; i < all.length; i++) {
    var box = all[i].getBoundingClientRect();
    if (box.width > 0 && box.right > edge + 0.5) {
      past.push(all[i].tagName.toLowerCase() + (all[i].id ? "#" + all[i].id : "") +
        (all[i].className ? "." + all[i].className : "") + " right " + Math.round(box.right));
    }
  }
  var columns = [].map.call(document.querySelectorAll("#targets thead th"), function (th) {
    var box = th.getBoundingClientRect();
    return { name: th.textContent, left: box.left, right: box.right };
  });
  var out = document.createElement("script");
  out.type = "application/json";
  out.id = "measure";
  out.textContent = JSON.stringify({
    clientWidth: edge, scrollWidth: root.scrollWidth, bodyScrollWidth: document.body.scrollWidth,
    innerWidth: window.innerWidth, columns: columns, past: past.slice(0, 25)
  });
  document.body.appendChild(out);
})();</script>"##;

/// The layout of a page at one window width.
#[derive(Debug)]
pub struct Layout {
    pub client_width: f64,
    pub scroll_width: f64,
    pub body_scroll_width: f64,
    pub inner_width: f64,
    /// Each column header of the targets table: its text, left and right edge in pixels.
    pub columns: Vec<(String, f64, f64)>,
    /// The elements whose right edge is past the client width (at most 25).
    pub past: Vec<String>,
}

impl Layout {
    /// Whether the page scrolls sideways.
    pub fn overflows(&self) -> bool {
        self.scroll_width > self.client_width || self.body_scroll_width > self.client_width
    }
}

/// Lays `page` (the served HTML) out at `width`×800 in Chromium and measures it. Blocking.
pub fn measure(binary: &Path, dir: &Path, page: &str, width: u32, tag: &str) -> Layout {
    assert!(page.contains("</body>"), "not a whole page: {page}");
    let file = dir.join(format!("measure-{tag}.html"));
    std::fs::write(
        &file,
        page.replacen("</body>", &format!("{MEASURE}</body>"), 1),
    )
    .unwrap();
    let dom = run_chromium(
        binary,
        dir,
        &format!("measure-{tag}"),
        &[
            format!("--window-size={width},800"),
            "--dump-dom".into(),
            format!("file://{}", file.display()),
        ],
    );
    let start = dom
        .stdout
        .find("id=\"measure\">")
        .unwrap_or_else(|| panic!("no measurement in:\n{}\n{}", dom.stdout, dom.stderr))
        + "id=\"measure\">".len();
    let end = dom.stdout[start..].find("</script>").unwrap() + start;
    let json: Value = serde_json::from_str(&dom.stdout[start..end]).unwrap();
    let number = |key: &str| {
        json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {json}"))
    };
    Layout {
        client_width: number("clientWidth"),
        scroll_width: number("scrollWidth"),
        body_scroll_width: number("bodyScrollWidth"),
        inner_width: number("innerWidth"),
        columns: json["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["left"].as_f64().unwrap(),
                    c["right"].as_f64().unwrap(),
                )
            })
            .collect(),
        past: json["past"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect(),
    }
}
