//! Compression of a closed segment into a `.zst` or `.gz` file readable by `zstdcat`,
//! `zcat` and Athena-style readers. Blocking: the shipper runs it on the blocking pool,
//! one segment at a time. The output appears under its final name only once complete
//! and durable (temporary file, fsync, rename), so a crash leaves no half file behind.

use crate::config::Compression;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

/// zstd's fastest regular level: on engine logs about gzip -6's ratio at several times
/// its speed (BENCHMARKS.md), with the daemon built for size.
const ZSTD_LEVEL: i32 = 1;

/// Compresses `raw` into `out`; returns the compressed size.
pub fn compress_file(raw: &Path, out: &Path, how: Compression) -> std::io::Result<u64> {
    let tmp = out.with_extension(format!("{}.tmp", how.extension()));
    let mut input = BufReader::with_capacity(256 << 10, File::open(raw)?);
    let file = File::create(&tmp)?;
    let result = (|| {
        let writer = BufWriter::with_capacity(256 << 10, file);
        let writer = match how {
            Compression::Zstd => {
                let mut enc = zstd::stream::Encoder::new(writer, ZSTD_LEVEL)?;
                enc.include_checksum(true)?;
                std::io::copy(&mut input, &mut enc)?;
                enc.finish()?
            }
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
                std::io::copy(&mut input, &mut enc)?;
                enc.finish()?
            }
        };
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })();
    match result {
        Ok(size) => {
            std::fs::rename(&tmp, out)?;
            super::journal::sync_dir(out.parent().unwrap_or(Path::new(".")))?;
            Ok(size)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn both_formats_decompress_to_the_input_with_the_standard_readers() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("seg.log");
        let text: String = (0..5000)
            .map(|i| format!("1:M 23 Nov 2026 04:40:{:02}.000 * line {i}\n", i % 60))
            .collect();
        std::fs::write(&raw, &text).unwrap();
        for how in [Compression::Zstd, Compression::Gzip] {
            let out = dir.path().join(format!("seg.log.{}", how.extension()));
            let size = compress_file(&raw, &out, how).unwrap();
            assert_eq!(size, std::fs::metadata(&out).unwrap().len());
            assert!(size < text.len() as u64 / 4, "{how:?} compressed to {size}");
            let mut back = String::new();
            match how {
                Compression::Zstd => {
                    zstd::stream::Decoder::new(File::open(&out).unwrap())
                        .unwrap()
                        .read_to_string(&mut back)
                        .unwrap();
                }
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(File::open(&out).unwrap())
                        .read_to_string(&mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, text);
            // The command-line readers operators use, where this machine has them.
            let tool = match how {
                Compression::Zstd => "zstdcat",
                Compression::Gzip => "zcat",
            };
            if let Ok(o) = std::process::Command::new(tool).arg(&out).output() {
                assert!(o.status.success());
                assert_eq!(String::from_utf8(o.stdout).unwrap(), text);
            }
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
