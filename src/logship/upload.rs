//! The uploader worker: ships compressed segments oldest first, one at a time, as one
//! PUT or (above `s3.part_size`) a multipart upload whose id and confirmed parts are
//! journaled as they happen, so a restart resumes the same upload instead of starting a
//! second one. A segment is deleted locally only after the store confirmed it. Failures
//! are retried with capped exponential backoff and full jitter; a flush retries at once.

use super::journal::{Multipart, Segment, State};
use super::{Shipper, UploadRecord, now_unix, source_index};
use crate::s3::S3Error;
use hyper::body::Bytes;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const FIRST_RETRY: Duration = Duration::from_secs(1);

pub(super) async fn run(me: Arc<Shipper>, mut stop: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    let mut rng = Jitter::seeded();
    loop {
        let ok = tokio::select! {
            r = me.ship_pending() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        {
            let mut st = me.lock_stats();
            st.in_flight = None;
            st.failing = !ok;
        }
        let wait = if ok {
            failures = 0;
            None
        } else {
            failures = failures.saturating_add(1);
            let cap = me.cfg.retry_max_interval;
            let exp = FIRST_RETRY.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
            Some(rng.between(exp.min(cap) / 2, exp.min(cap)))
        };
        tokio::select! {
            _ = me.wake_uploader.notified() => {}
            _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Shipper {
    /// Uploads every compressed segment, then aborts orphaned uploads; false on the first
    /// failure (recorded), true when nothing is left.
    async fn ship_pending(&self) -> bool {
        loop {
            let next = {
                let _writer = self.lock_writer();
                let j = self.lock_journal();
                let next = j
                    .segments
                    .iter()
                    .find(|s| s.state == State::Compressed)
                    .cloned();
                self.lock_stats().in_flight = next.as_ref().map(|s| s.seq);
                next
            };
            let Some(seg) = next else { break };
            let i = source_index(&seg.source);
            let key = self.object_key(&seg);
            match self.upload(&seg, &key).await {
                Ok(()) => self.confirmed(&seg, &key),
                Err(Failure::S3(e)) => {
                    self.record_error(Some(i), e.code(), format!("uploading {key}: {e}"));
                    return false;
                }
                Err(Failure::Missing(e)) => self.forget_missing(&seg, format!("{key}: {e}")),
                Err(Failure::Unreadable(e)) => {
                    self.record_error(Some(i), "logship_segment_unreadable", format!("{key}: {e}"));
                    return false;
                }
                Err(Failure::Recorded) => return false,
            }
        }
        // Orphans after the queue: a store that refuses aborts must not stop shipping.
        let orphans = self.lock_journal().orphans.clone();
        for o in orphans {
            if let Err(e) = self.client.abort_multipart(&o.key, &o.upload_id).await {
                self.record_error(
                    None,
                    e.code(),
                    format!("aborting the upload of {}: {e}", o.key),
                );
                return false;
            }
            let _ = self.journal_update(|j| j.orphans.retain(|x| x != &o));
        }
        true
    }

    async fn upload(&self, seg: &Segment, key: &str) -> Result<(), Failure> {
        let path = self.segment_path(seg);
        if seg.stored_bytes <= self.cfg.s3.part_size && seg.multipart.is_none() {
            let body = read_range(&path, 0, seg.stored_bytes)?;
            self.client.put_object(key, body).await?;
            return Ok(());
        }
        let mut mp = match &seg.multipart {
            Some(m) => m.clone(),
            None => {
                let upload_id = self.client.create_multipart(key).await?;
                let mp = Multipart {
                    upload_id,
                    part_size: self.cfg.s3.part_size,
                    etags: Vec::new(),
                };
                if self.set_multipart(seg.seq, Some(mp.clone())).is_err() {
                    // Not journaled: abort it now rather than leave it open.
                    let _ = self.client.abort_multipart(key, &mp.upload_id).await;
                    return Err(Failure::Recorded);
                }
                mp
            }
        };
        let parts = seg.stored_bytes.div_ceil(mp.part_size).max(1);
        while (mp.etags.len() as u64) < parts {
            let n = mp.etags.len() as u64;
            let offset = n * mp.part_size;
            let len = mp.part_size.min(seg.stored_bytes - offset);
            let body = read_range(&path, offset, len)?;
            let number = u16::try_from(n + 1).unwrap_or(u16::MAX);
            match self
                .client
                .upload_part(key, &mp.upload_id, number, body)
                .await
            {
                Ok(etag) => {
                    mp.etags.push(etag);
                    self.set_multipart(seg.seq, Some(mp.clone()))?;
                }
                Err(e) if e.s3_code() == Some("NoSuchUpload") => {
                    // Expired or aborted by a lifecycle rule: start over next time.
                    self.set_multipart(seg.seq, None)?;
                    return Err(e
                        .context("the multipart upload is gone; starting it again")
                        .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self
            .client
            .complete_multipart(key, &mp.upload_id, &mp.etags)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.s3_code() == Some("NoSuchUpload") => {
                // Completed before a crash, but not journaled? The object says.
                if self.client.head_object(key).await? == Some(seg.stored_bytes) {
                    return Ok(());
                }
                self.set_multipart(seg.seq, None)?;
                Err(e
                    .context("the multipart upload is gone; starting it again")
                    .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_multipart(&self, seq: u64, mp: Option<Multipart>) -> Result<(), Failure> {
        self.journal_update(|j| {
            if let Some(s) = j.get_mut(seq) {
                s.multipart = mp;
            }
        })
        .map_err(|_| Failure::Recorded)
    }

    /// The store has the segment: journal it, count it, and delete the local copy
    /// unless it is to be kept for `local_retention`.
    fn confirmed(&self, seg: &Segment, key: &str) {
        let now = now_unix();
        let keep = !self.cfg.local_retention.is_zero();
        let i = source_index(&seg.source);
        // The counters change under the journal's lock, with the queue: a status read in
        // between never sees the segment gone from the queue and not yet counted.
        let journaled = self.journal_update(|j| {
            j.last_success_at = now;
            if keep {
                if let Some(s) = j.get_mut(seg.seq) {
                    s.state = State::Uploaded;
                    s.uploaded_at = Some(now);
                    s.multipart = None;
                }
            } else {
                j.remove(seg.seq);
            }
            let mut st = self.lock_stats();
            st.uploaded_segments[i] += 1;
            st.uploaded_bytes[i] += seg.stored_bytes;
            st.last_upload[i] = Some(UploadRecord {
                segment: seg.name.clone(),
                object: key.to_owned(),
                bytes: seg.stored_bytes,
                at: now,
            });
        });
        if journaled.is_ok() && !keep {
            let _ = std::fs::remove_file(self.segment_path(seg));
        }
        tracing::debug!("log shipping: uploaded {key} ({} bytes)", seg.stored_bytes);
    }
}

/// Why one upload attempt failed.
enum Failure {
    S3(S3Error),
    /// The segment's file is gone.
    Missing(String),
    /// The segment's file cannot be read now (permissions, I/O error): retried.
    Unreadable(String),
    /// Already recorded (a journal write failed).
    Recorded,
}

impl From<S3Error> for Failure {
    fn from(e: S3Error) -> Failure {
        Failure::S3(e)
    }
}

/// `len` bytes of `path` from `offset`, read whole (a part is at most `part_size`).
fn read_range(path: &std::path::Path, offset: u64, len: u64) -> Result<Bytes, Failure> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        f.read_exact(&mut buf)?;
        Ok(buf)
    };
    read().map(Bytes::from).map_err(|e| {
        let message = format!("cannot read {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::Missing(message)
        } else {
            Failure::Unreadable(message)
        }
    })
}

/// A small xorshift generator for retry jitter; not for anything secret.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(if span == 0 { 0 } else { self.0 % (span + 1) })
    }
}
