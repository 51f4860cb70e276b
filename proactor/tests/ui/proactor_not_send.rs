//! A proactor belongs to the thread that runs its loop: moving it to another thread does not
//! compile.
use proactor::Proactor;

fn main() -> std::io::Result<()> {
    let p = Proactor::new()?;
    let t = std::thread::spawn(move || p.run());
    drop(t);
    Ok(())
}
