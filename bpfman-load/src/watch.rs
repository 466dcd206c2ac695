//! `apply --watch`: rounds of apply at an interval until SIGTERM or
//! SIGINT, which let the current deployment finish.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::future::{Either, select};
use tokio::signal::unix::{SignalKind, signal};

/// Runs `round` now and then every `interval`, until a signal. `round`
/// gets a function that says whether to stop (asked between steps); a
/// failed round is reported and the next one runs.
pub fn watch(
    interval: Duration,
    mut round: impl FnMut(&dyn Fn() -> bool) -> Result<()>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the watch loop")?;
    let (term, int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .context("cannot handle SIGTERM and SIGINT")?;
    let (term, int) = (RefCell::new(term), RefCell::new(int));
    // Whether a signal came, waiting at most `wait` for one.
    let signalled = |wait: Duration| {
        let (mut term, mut int) = (term.borrow_mut(), int.borrow_mut());
        rt.block_on(async {
            let a = std::pin::pin!(term.recv());
            let b = std::pin::pin!(int.recv());
            let sleep = std::pin::pin!(tokio::time::sleep(wait));
            matches!(select(select(a, b), sleep).await, Either::Left(_))
        })
    };
    let stopped = Cell::new(false);
    loop {
        let stop = || {
            if !stopped.get() {
                stopped.set(signalled(Duration::ZERO));
            }
            stopped.get()
        };
        if let Err(e) = round(&stop) {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
        }
        if stop() {
            break;
        }
        if signalled(interval) {
            break;
        }
    }
    eprintln!("stopped on a signal; the host is as the last round left it");
    Ok(())
}
