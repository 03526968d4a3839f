!! FKB, the Fortran-Keras Bridge: `use fkb` gives a host model everything it needs.
!!
!!     use fkb
!!     type(fkb_network) :: net
!!     call net%load('model.fkb', stat=stat, errmsg=msg)
!!     call net%predict(x, y, stat=stat)     ! x(n_in, batch) -> y(n_out, batch)
!!
!! Every call that can fail takes optional `stat` and `errmsg`: with `stat` present nothing
!! ever stops the host program; `stat` is FKB_OK (0) or one of the negative FKB_ERR_* codes.
module fkb
  use fkb_network_m, only: fkb_network, fkb_rnn_state
  use fkb_refs, only: fkb_ref32, fkb_ref64, fkb_ref
  use fkb_ensemble_m, only: fkb_ensemble
  use fkb_custom_loss_m, only: fkb_custom_loss
  use fkb_layer, only: fkb_layer_t, view32_t, view64_t
  use fkb_layer_registry, only: fkb_register_layer
  use fkb_config, only: fkb_config_t
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_IO, FKB_ERR_FORMAT, FKB_ERR_VERSION, &
                        FKB_ERR_UNSUPPORTED, FKB_ERR_SHAPE, FKB_ERR_MEMORY, FKB_ERR_INTERNAL, &
                        FKB_ERR_LAYER, fkb_status_name, fkb_layer_fail
  use fkb_tensor, only: FKB_FLOAT32, FKB_FLOAT64, fkb_tensor_t
  use fkb_version, only: fkb_version_string
  use fkb_blas, only: fkb_set_deterministic => set_deterministic, &
                      fkb_is_deterministic => is_deterministic
  implicit none
  private
  public :: fkb_network, fkb_ensemble, fkb_custom_loss, fkb_status_name, fkb_version_string
  public :: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_IO, FKB_ERR_FORMAT, FKB_ERR_VERSION, &
            FKB_ERR_UNSUPPORTED, FKB_ERR_SHAPE, FKB_ERR_MEMORY, FKB_ERR_INTERNAL, FKB_ERR_LAYER
  public :: FKB_FLOAT32, FKB_FLOAT64
  !> Several inputs/outputs: net%predict(ins, outs) with arrays of fkb_ref32 (or fkb_ref64)
  !> made by fkb_ref(array); recurrent state carried between calls: fkb_rnn_state.
  public :: fkb_ref32, fkb_ref64, fkb_ref, fkb_rnn_state
  !> Deterministic mode: bitwise identical outputs for any thread count, batch size and split
  !> of a batch into calls (also switched on by FKB_DETERMINISTIC=1 at the first load).
  public :: fkb_set_deterministic, fkb_is_deterministic
  !> Custom layers: extend fkb_layer_t (options through fkb_config_t accessors, tensors as
  !> fkb_tensor_t) and register the type with fkb_register_layer (examples/custom_layer/).
  public :: fkb_layer_t, fkb_register_layer, fkb_config_t, fkb_tensor_t, view32_t, view64_t
  !> A custom layer's forward reports a failure with fkb_layer_fail(message): the predict call
  !> returns FKB_ERR_LAYER with it.
  public :: fkb_layer_fail
end module fkb
