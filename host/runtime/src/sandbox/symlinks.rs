//! Symlinks a guest creates in a granted directory may point only within the directory
//! they are created from. The sandbox itself never follows a link out of its grant, but
//! host-side software that later reads that directory would: a tool granted `./out` could
//! otherwise leave `out/report -> ../../home/user/.ssh/id_ed25519` for the next reader.

use std::path::{Component, Path};

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{Descriptor, ErrorCode, Host, HostDescriptor};
use wasmtime_wasi::WasiView;

/// The version wasmtime-wasi 48 defines (imports of older 0.2 versions resolve to it).
const WASI_FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `descriptor.symlink-at` with one that refuses links leaving their directory
/// (`not-permitted`) and otherwise does what wasmtime-wasi does.
pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(WASI_FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut cx: StoreContextMut<'_, T>, (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                if !stays_within(&target, &link) {
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                let mut fs = cx.data_mut().filesystem();
                let result = match HostDescriptor::symlink_at(&mut fs, fd, target, link).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Host::convert_error_code(&mut fs, e)?),
                };
                Ok((result,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether a link at `link` (relative to the directory it is created from) whose text is
/// `target` resolves, lexically, within that directory. Absolute targets never do.
fn stays_within(target: &str, link: &str) -> bool {
    let mut depth: i64 = 0;
    let parent = Path::new(link).parent().unwrap_or(Path::new(""));
    for part in parent.components().chain(Path::new(target).components()) {
        match part {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::stays_within;

    #[test]
    fn links_may_point_anywhere_below_their_directory_and_nowhere_else() {
        assert!(stays_within("data.txt", "link"));
        assert!(stays_within("sub/data.txt", "link"));
        assert!(stays_within("../data.txt", "sub/link"));
        assert!(stays_within("./a/../b", "link"));
        assert!(!stays_within("../data.txt", "link"));
        assert!(!stays_within("sub/../../x", "link"));
        assert!(!stays_within("../../etc/passwd", "sub/link"));
        assert!(!stays_within("/etc/passwd", "link"));
        assert!(!stays_within("x", "../link"));
    }
}
