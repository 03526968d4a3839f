!! The registry of layer types: the one place that maps a type name in a model file to the
!! Fortran type implementing it. Adding a layer type = one new module in layers/ plus one
!! `case` line here (see docs/adding-a-layer.md).
module fkb_layer_registry
  use fkb_errors, only: FKB_OK, FKB_ERR_UNSUPPORTED, set_error
  use fkb_layer, only: fkb_layer_t
  use fkb_layer_dense, only: fkb_dense_t
  use fkb_layer_activation, only: fkb_activation_layer_t
  use fkb_layer_identity, only: fkb_identity_t
  use fkb_layer_batchnorm, only: fkb_batchnorm_t
  use fkb_layer_layernorm, only: fkb_layernorm_t
  use fkb_layer_normalization, only: fkb_normalization_t
  use fkb_layer_prelu, only: fkb_prelu_t
  implicit none
  private
  public :: new_layer

contains

  subroutine new_layer(type_name, layer, stat, msg)
    !! Allocates an unconfigured layer of the named type.
    character(len=*), intent(in) :: type_name
    class(fkb_layer_t), allocatable, intent(out) :: layer
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    stat = FKB_OK
    select case (type_name)
    case ('dense');                    allocate(fkb_dense_t :: layer)
    case ('activation', 'relu', 'leaky_relu', 'elu', 'softmax')
                                       allocate(fkb_activation_layer_t :: layer)
    case ('dropout', 'flatten');       allocate(fkb_identity_t :: layer)
    case ('batch_normalization');      allocate(fkb_batchnorm_t :: layer)
    case ('layer_normalization');      allocate(fkb_layernorm_t :: layer)
    case ('normalization');            allocate(fkb_normalization_t :: layer)
    case ('prelu');                    allocate(fkb_prelu_t :: layer)
    case default
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unknown layer type '" // type_name // "'")
      return
    end select
    layer%type_name = type_name
  end subroutine new_layer

end module fkb_layer_registry
