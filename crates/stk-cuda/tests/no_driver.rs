//! Without a CUDA driver every entry point is a typed error, never a panic (cudarc panics on
//! its first driver call when libcuda is missing, so this is what the presence check buys).

use stk_core::Error;
use stk_cuda::CudaDevice;

#[test]
fn missing_driver_or_device_is_an_error_not_a_panic() {
    if stk_cuda::driver_present() {
        // A driver is here (GPU machine): an ordinal no machine has must be NoCudaDevice.
        let e = CudaDevice::new(1_000_000).unwrap_err();
        assert!(matches!(e, Error::NoCudaDevice(1_000_000)), "{e}");
        assert!(stk_cuda::driver_version().unwrap() >= 12000);
        println!("driver present: checked that a missing device is Err(NoCudaDevice)");
    } else {
        let e = CudaDevice::new(0).unwrap_err();
        assert!(matches!(e, Error::NoCudaDriver), "{e}");
        assert!(e.to_string().contains("no CUDA driver"), "{e}");
        assert!(matches!(CudaDevice::new(3), Err(Error::NoCudaDriver)));
        assert!(matches!(
            stk_cuda::driver_version(),
            Err(Error::NoCudaDriver)
        ));
        assert!(matches!(
            stk_cuda::shared_device(0),
            Err(Error::NoCudaDriver)
        ));
    }
}
