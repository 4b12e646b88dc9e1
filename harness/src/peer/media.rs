//! Media for bots: what they send (pre-encoded VP8 and Opus, looped, at their real frame and
//! packet rate; webrtc-rs has no encoder) and how they count what they receive (webrtc-rs fills
//! no frame counters, so the harness depacketizes VP8 itself).
//!
//! The files are committed in `harness/media/` (generated with ffmpeg: a `testsrc2` pattern,
//! 320x240, 15 fps, VP8 in IVF; a 440 Hz tone, 48 kHz stereo Opus in Ogg, 20 ms pages).

use rtc::media::Sample;
use rtc::media::io::ivf_reader::IVFReader;
use rtc::media::io::ogg_reader::OggReader;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

/// 4 s of VP8 video, 320x240, 15 fps (IVF).
pub const VIDEO_IVF: &[u8] = include_bytes!("../../media/video-vp8-320x240-15fps.ivf");
/// 4 s of Opus audio, 48 kHz stereo (Ogg, 20 ms pages).
pub const AUDIO_OGG: &[u8] = include_bytes!("../../media/audio-opus-48k.ogg");

/// What a peer received on one connection (webrtc-stats names where they exist).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct MediaCounters {
    /// Video RTP packets received (`inbound-rtp` `packetsReceived`, kind video).
    pub video_packets_received: u64,
    /// Whole video frames: decoded by a browser (`framesDecoded`), or completely received and
    /// depacketized by a bot (RTP marker bit).
    pub video_frames: u64,
    /// Of those, key frames (bots only; browsers report `None`-like 0).
    pub video_key_frames: u64,
    /// Audio RTP packets received (`inbound-rtp` `packetsReceived`, kind audio); for Opus one
    /// packet is one Opus packet.
    pub audio_packets_received: u64,
    /// Browsers: `inbound-rtp` `framesReceived` (video; bots cannot tell received from whole).
    #[serde(default)]
    pub video_frames_received: Option<u64>,
    /// Browsers: `inbound-rtp` `totalSamplesReceived` (audio, decoded samples).
    #[serde(default)]
    pub audio_total_samples_received: Option<u64>,
}

/// Where a VP8 RTP payload (RFC 7741 §4.2) stands: whether it starts a frame and, if it does,
/// whether that frame is a key frame (VP8 payload header P bit = 0, RFC 7741 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Start {
    /// First packet of a frame (S = 1 and partition index 0).
    pub starts_frame: bool,
    /// The frame is a key frame (only meaningful when `starts_frame`).
    pub key_frame: bool,
}

/// Parses the VP8 payload descriptor; `None` when the payload is too short to hold one.
pub fn vp8_start(payload: &[u8]) -> Option<Vp8Start> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M bit).
            i += if *payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    let starts_frame = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let key_frame = starts_frame && payload.get(i).is_some_and(|h| h & 0x01 == 0);
    Some(Vp8Start {
        starts_frame,
        key_frame,
    })
}

/// A bot's outgoing track of one kind.
pub struct Outgoing {
    kind: crate::scenario::MediaKind,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
}

fn codec(kind: crate::scenario::MediaKind) -> RTCRtpCodec {
    match kind {
        crate::scenario::MediaKind::Video => RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        crate::scenario::MediaKind::Audio => RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
    }
}

/// A fresh SSRC (RFC 3550 §8: unique within the session): a process-wide counter mixed with the
/// process id, never repeated by this process.
fn next_ssrc() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (std::process::id().wrapping_mul(0x9E37_79B9)) ^ n.wrapping_mul(0x85EB_CA6B)
}

/// Adds one sendrecv track per kind to `pc` (before the offer or answer).
pub async fn add_tracks(
    pc: &Arc<dyn PeerConnection>,
    kinds: &[crate::scenario::MediaKind],
    label: &str,
) -> Result<Vec<Outgoing>, String> {
    let mut out = Vec::new();
    for kind in kinds {
        let rtp_kind = match kind {
            crate::scenario::MediaKind::Video => RtpCodecKind::Video,
            crate::scenario::MediaKind::Audio => RtpCodecKind::Audio,
        };
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    format!("{label}-stream"),
                    format!("{label}-{rtp_kind}"),
                    format!("{label} {rtp_kind}"),
                    rtp_kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(next_ssrc()),
                            ..Default::default()
                        },
                        codec: codec(*kind),
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| format!("creating the {rtp_kind} track: {e}"))?,
        );
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("addTrack({rtp_kind}): {e}"))?;
        out.push(Outgoing {
            kind: *kind,
            track,
            sender,
        });
    }
    Ok(out)
}

fn w3c(d: crate::scenario::Direction) -> RTCRtpTransceiverDirection {
    match d {
        crate::scenario::Direction::Sendrecv => RTCRtpTransceiverDirection::Sendrecv,
        crate::scenario::Direction::Sendonly => RTCRtpTransceiverDirection::Sendonly,
        crate::scenario::Direction::Recvonly => RTCRtpTransceiverDirection::Recvonly,
        crate::scenario::Direction::Inactive => RTCRtpTransceiverDirection::Inactive,
    }
}

/// Sets every transceiver's direction.
pub async fn set_all_directions(
    pc: &Arc<dyn PeerConnection>,
    d: crate::scenario::Direction,
) -> Result<(), String> {
    for t in pc.get_transceivers().await {
        t.set_direction(w3c(d))
            .await
            .map_err(|e| format!("setting direction {d:?}: {e}"))?;
    }
    Ok(())
}

/// Prepares a bot's media with W3C transceiver semantics: `sendrecv`/`sendonly` add a track
/// per kind (then set the direction); a `recvonly` or `inactive` offerer adds a transceiver per
/// kind with that direction; a `recvonly` answerer adds nothing (the offer's transceivers answer
/// recvonly), an `inactive` one turns them off once the offer is applied.
pub async fn set_up(
    pc: &Arc<dyn PeerConnection>,
    kinds: &[crate::scenario::MediaKind],
    direction: crate::scenario::Direction,
    role: crate::peer::Role,
    label: &str,
) -> Result<Vec<Outgoing>, String> {
    use crate::scenario::Direction as D;
    match direction {
        D::Sendrecv => add_tracks(pc, kinds, label).await,
        D::Sendonly => {
            let out = add_tracks(pc, kinds, label).await?;
            set_all_directions(pc, D::Sendonly).await?;
            Ok(out)
        }
        D::Recvonly | D::Inactive => {
            if role == crate::peer::Role::Offerer {
                for kind in kinds {
                    let k = match kind {
                        crate::scenario::MediaKind::Video => RtpCodecKind::Video,
                        crate::scenario::MediaKind::Audio => RtpCodecKind::Audio,
                    };
                    pc.add_transceiver_from_kind(
                        k,
                        Some(RTCRtpTransceiverInit {
                            direction: w3c(direction),
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .await
                    .map_err(|e| format!("addTransceiver({k}): {e}"))?;
                }
            }
            Ok(Vec::new())
        }
    }
}

/// Sends the committed file of the track's kind, looped, at its real rate, until aborted.
pub async fn stream(out: Outgoing) -> Result<(), String> {
    let pt = out
        .sender
        .get_parameters()
        .await
        .map_err(|e| e.to_string())?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or("the sender has no negotiated codec")?;
    let ssrc = *out
        .track
        .ssrcs()
        .await
        .first()
        .ok_or("the track has no SSRC")?;
    match out.kind {
        crate::scenario::MediaKind::Video => loop {
            let (mut ivf, header) =
                IVFReader::new(std::io::Cursor::new(VIDEO_IVF)).map_err(|e| e.to_string())?;
            let period = Duration::from_millis(
                (1000 * u64::from(header.timebase_numerator))
                    / u64::from(header.timebase_denominator).max(1),
            );
            let mut tick = tokio::time::interval(period);
            while let Ok((frame, _)) = ivf.parse_next_frame() {
                tick.tick().await;
                out.track
                    .sample_writer(ssrc, pt)
                    .write_sample(&Sample {
                        data: frame.freeze(),
                        duration: period,
                        ..Sample::new(Instant::now())
                    })
                    .await
                    .map_err(|e| format!("video write_sample: {e}"))?;
            }
        },
        crate::scenario::MediaKind::Audio => loop {
            let (mut ogg, _) =
                OggReader::new(std::io::Cursor::new(AUDIO_OGG), true).map_err(|e| e.to_string())?;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut last_granule = 0u64;
            while let Ok((page, header)) = ogg.parse_next_page() {
                let samples = header.granule_position.saturating_sub(last_granule);
                last_granule = header.granule_position;
                tick.tick().await;
                out.track
                    .sample_writer(ssrc, pt)
                    .write_sample(&Sample {
                        data: page.freeze(),
                        duration: Duration::from_micros(samples * 1_000_000 / 48_000),
                        ..Sample::new(Instant::now())
                    })
                    .await
                    .map_err(|e| format!("audio write_sample: {e}"))?;
            }
        },
    }
}

/// Counts what arrives on a remote track; `first_frame` is called once, when the first whole
/// video frame has arrived.
pub async fn count(
    track: Arc<dyn TrackRemote>,
    counters: Arc<Mutex<MediaCounters>>,
    first_frame: impl FnOnce(),
) {
    let video = track.kind().await == RtpCodecKind::Video;
    let mut first_frame = Some(first_frame);
    let mut in_frame = false;
    let mut frame_is_key = false;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(p) = event else {
            continue;
        };
        let Ok(mut c) = counters.lock() else { return };
        if !video {
            c.audio_packets_received += 1;
            continue;
        }
        c.video_packets_received += 1;
        if let Some(start) = vp8_start(&p.payload)
            && start.starts_frame
        {
            in_frame = true;
            frame_is_key = start.key_frame;
        }
        if p.header.marker && in_frame {
            in_frame = false;
            c.video_frames += 1;
            if frame_is_key {
                c.video_key_frames += 1;
            }
            if let Some(f) = first_frame.take() {
                drop(c);
                f();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_without_extension() {
        // S=1, PID=0, then a VP8 header with P=0 (key frame).
        assert_eq!(
            vp8_start(&[0x10, 0x90, 0x01]),
            Some(Vp8Start {
                starts_frame: true,
                key_frame: true
            })
        );
        // P=1: inter frame.
        assert_eq!(vp8_start(&[0x10, 0x91]).map(|s| s.key_frame), Some(false));
        // Continuation packet: S=0.
        assert_eq!(
            vp8_start(&[0x00, 0x00]).map(|s| s.starts_frame),
            Some(false)
        );
        assert_eq!(vp8_start(&[]), None);
    }

    #[test]
    fn descriptor_with_15_bit_picture_id_and_tl0picidx() {
        // X=1, S=1; I=1, L=1; PictureID with M=1 (2 bytes); TL0PICIDX; then P=0.
        let p = [0x90, 0xC0, 0x80 | 0x12, 0x34, 0x05, 0x10];
        assert_eq!(
            vp8_start(&p),
            Some(Vp8Start {
                starts_frame: true,
                key_frame: true
            })
        );
        // Same with P=1.
        let p = [0x90, 0xC0, 0x80 | 0x12, 0x34, 0x05, 0x11];
        assert_eq!(vp8_start(&p).map(|s| s.key_frame), Some(false));
    }

    #[test]
    fn the_committed_files_parse() {
        let (mut ivf, header) =
            rtc::media::io::ivf_reader::IVFReader::new(std::io::Cursor::new(VIDEO_IVF)).unwrap();
        assert_eq!((header.width, header.height), (320, 240));
        let mut frames = 0;
        while ivf.parse_next_frame().is_ok() {
            frames += 1;
        }
        assert_eq!(frames, 60);
        let (mut ogg, _) =
            rtc::media::io::ogg_reader::OggReader::new(std::io::Cursor::new(AUDIO_OGG), true)
                .unwrap();
        let mut pages = 0;
        while ogg.parse_next_page().is_ok() {
            pages += 1;
        }
        assert!(pages >= 150, "{pages} pages");
    }
}
