//! The size of the zip Lambda would receive for a bootstrap (deflate level
//! 9, like `scripts/build-lambdas.sh`).

use std::path::Path;

pub fn zipped_size(path: &Path) -> Result<u64, String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             buf = io.BytesIO()\n\
             with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n\
             \x20   z.write(sys.argv[1], 'bootstrap')\n\
             print(len(buf.getvalue()))\n",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("python3 (zip size): {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "zip size of {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
