//! The seed's simulated training loop, logged with the Rust client:
//! 10 epochs of accuracy and loss, with learning_rate and epochs in the config.
//!
//! ```sh
//! cargo run -p cairn_examples --bin seed_training            # to http://127.0.0.1:8080
//! CAIRN_MODE=offline cargo run -p cairn_examples --bin seed_training
//! ```

use cairn_client::{Settings, map};

fn main() -> Result<(), cairn_client::ClientError> {
    let epochs = 10;
    let lr = 0.01;
    let run = cairn_client::init(
        Settings::new().project(std::env::var("CAIRN_PROJECT").unwrap_or_else(|_| "awesome-project".into())).config(map! {"learning_rate" => lr, "epochs" => epochs}),
    )?;
    let offset = fastrand::f64() / 5.0;
    println!("lr: {lr}");
    // simulating a training run
    for epoch in 0..epochs {
        let acc = 1.0 - 2f64.powi(-epoch) - fastrand::f64() / (epoch + 1) as f64 - offset;
        let loss = 2f64.powi(-epoch) + fastrand::f64() / (epoch + 1) as f64 + offset;
        println!("epoch={epoch}, accuracy={acc}, loss={loss}");
        run.log([("accuracy", acc), ("loss", loss)])?;
    }
    run.finish(None)?;
    Ok(())
}
