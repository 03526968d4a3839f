!! The registry of layer types: the one place that maps a type name in a model file to the
!! Fortran type implementing it. Adding a layer type = one new module in layers/ plus one
!! `case` line here (see docs/adding-a-layer.md). Host programs add their own layer types
!! at run time with `fkb_register_layer` (examples/custom_layer/), without touching FKB.
module fkb_layer_registry
  use fkb_errors, only: FKB_OK, FKB_ERR_UNSUPPORTED, FKB_ERR_ARGUMENT, set_error, report
  use fkb_layer, only: fkb_layer_t
  use fkb_layer_dense, only: fkb_dense_t
  use fkb_layer_activation, only: fkb_activation_layer_t
  use fkb_layer_identity, only: fkb_identity_t
  use fkb_layer_batchnorm, only: fkb_batchnorm_t
  use fkb_layer_layernorm, only: fkb_layernorm_t
  use fkb_layer_normalization, only: fkb_normalization_t
  use fkb_layer_prelu, only: fkb_prelu_t
  use fkb_layer_conv1d, only: fkb_conv1d_t
  use fkb_layer_pool1d, only: fkb_pool1d_t
  use fkb_layer_reshape, only: fkb_reshape_t
  use fkb_layer_pad1d, only: fkb_pad1d_t
  use fkb_layer_rnn, only: fkb_rnn_t
  use fkb_layer_bidirectional, only: fkb_bidirectional_t
  use fkb_layer_merge, only: fkb_merge_t
  implicit none
  private
  public :: new_layer, fkb_register_layer, is_builtin

  type :: user_type
    character(len=:), allocatable :: name
    class(fkb_layer_t), allocatable :: mold
  end type user_type

  !> Layer types registered by the host program (register before loading; not thread-safe).
  type(user_type), allocatable, save :: user_types(:)

contains

  subroutine fkb_register_layer(name, mold, stat, errmsg)
    !! Registers a user's layer type under `name` (the type name in model files): `mold` is an
    !! object of the user's extension of fkb_layer_t; each layer of that type in a file gets a
    !! fresh object of its dynamic type, then `configure` reads the record's options. Built-in
    !! names cannot be taken; registering a name again replaces its type.
    character(len=*), intent(in) :: name
    class(fkb_layer_t), intent(in) :: mold
    integer, intent(out), optional :: stat
    character(len=*), intent(inout), optional :: errmsg
    class(fkb_layer_t), allocatable :: probe
    character(len=:), allocatable :: msg
    integer :: st, i
    msg = ''
    st = FKB_OK
    if (len_trim(name) == 0 .or. verify(name, 'abcdefghijklmnopqrstuvwxyz0123456789_') /= 0) then
      call set_error(st, msg, FKB_ERR_ARGUMENT, "layer type name '" // name // &
                     "' must be [a-z0-9_]+")
    else
      call builtin(name, probe)
      if (allocated(probe)) call set_error(st, msg, FKB_ERR_ARGUMENT, "'" // name // &
                                           "' is a built-in layer type")
    end if
    if (st == FKB_OK) then
      if (.not. allocated(user_types)) allocate(user_types(0))
      do i = 1, size(user_types)
        if (user_types(i)%name == name) then
          deallocate(user_types(i)%mold)
          allocate(user_types(i)%mold, mold=mold)
          call report(st, msg, stat, errmsg)
          return
        end if
      end do
      call grow_user_types()
      user_types(size(user_types))%name = name
      allocate(user_types(size(user_types))%mold, mold=mold)
    end if
    call report(st, msg, stat, errmsg)
  contains
    subroutine grow_user_types()
      ! One more entry (move_alloc: array constructors of types with allocatable components
      ! leak with gfortran 12).
      type(user_type), allocatable :: grown(:)
      integer :: j
      allocate(grown(size(user_types) + 1))
      do j = 1, size(user_types)
        call move_alloc(user_types(j)%name, grown(j)%name)
        call move_alloc(user_types(j)%mold, grown(j)%mold)
      end do
      call move_alloc(grown, user_types)
    end subroutine grow_user_types
  end subroutine fkb_register_layer

  subroutine new_layer(type_name, layer, stat, msg)
    !! Allocates an unconfigured layer of the named type.
    character(len=*), intent(in) :: type_name
    class(fkb_layer_t), allocatable, intent(out) :: layer
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer :: i
    stat = FKB_OK
    call builtin(type_name, layer)
    if (.not. allocated(layer) .and. allocated(user_types)) then
      do i = 1, size(user_types)
        if (user_types(i)%name == type_name) then
          allocate(layer, mold=user_types(i)%mold)
          exit
        end if
      end do
    end if
    if (.not. allocated(layer)) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unknown layer type '" // type_name // &
                     "' (not built in, and no layer type of that name is registered)")
      return
    end if
    layer%type_name = type_name
  end subroutine new_layer

  logical function is_builtin(type_name)
    !! Whether type_name is one of FKB's own layer types (not registered by the host).
    character(len=*), intent(in) :: type_name
    class(fkb_layer_t), allocatable :: probe
    call builtin(type_name, probe)
    is_builtin = allocated(probe)
  end function is_builtin

  subroutine builtin(type_name, layer)
    ! The built-in layer types: one `case` line each.
    character(len=*), intent(in) :: type_name
    class(fkb_layer_t), allocatable, intent(out) :: layer
    select case (type_name)
    case ('dense');                    allocate(fkb_dense_t :: layer)
    case ('activation', 'relu', 'leaky_relu', 'elu', 'softmax')
                                       allocate(fkb_activation_layer_t :: layer)
    case ('dropout', 'flatten');       allocate(fkb_identity_t :: layer)
    case ('batch_normalization');      allocate(fkb_batchnorm_t :: layer)
    case ('layer_normalization');      allocate(fkb_layernorm_t :: layer)
    case ('normalization');            allocate(fkb_normalization_t :: layer)
    case ('prelu');                    allocate(fkb_prelu_t :: layer)
    case ('conv1d');                   allocate(fkb_conv1d_t :: layer)
    case ('max_pooling1d', 'average_pooling1d', 'global_average_pooling1d', &
          'global_max_pooling1d');     allocate(fkb_pool1d_t :: layer)
    case ('reshape', 'permute', 'repeat_vector')
                                       allocate(fkb_reshape_t :: layer)
    case ('up_sampling1d', 'zero_padding1d', 'cropping1d')
                                       allocate(fkb_pad1d_t :: layer)
    case ('simple_rnn', 'lstm', 'gru'); allocate(fkb_rnn_t :: layer)
    case ('bidirectional');            allocate(fkb_bidirectional_t :: layer)
    case ('add', 'subtract', 'multiply', 'average', 'maximum', 'minimum', 'concatenate')
                                       allocate(fkb_merge_t :: layer)
    end select
  end subroutine builtin

end module fkb_layer_registry
