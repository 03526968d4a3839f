!! Dense: y = act(kernel^T x + bias) over the batch (fkb_affine: one product with bias and
!! activation fused into it or applied to cache-sized blocks of its result).
module fkb_layer_dense
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, set_error
  use fkb_config, only: fkb_config_t, int_text, real_text
  use fkb_layer, only: fkb_layer_t
  use fkb_activation, only: fkb_activation_t, read_activation, write_activation, bias_activation, &
                            apply_activation, activation_backward, ACT_LINEAR
  use fkb_tensor, only: fkb_tensor_t
  use fkb_blas, only: gemm, gemm_nt, gemm_tn, fused_gemm, FUSED_NONE, BLAS_INT_MAX
  use fkb_affine, only: affine
  implicit none
  private
  public :: fkb_dense_t

  interface linear_forward
    module procedure linear_forward_r32, linear_forward_r64
  end interface linear_forward
  interface column_sum
    module procedure column_sum_r32, column_sum_r64
  end interface column_sum

  type, extends(fkb_layer_t) :: fkb_dense_t
    type(fkb_activation_t) :: act
    logical :: use_bias = .true.
    real(real64) :: kernel_l1 = 0, kernel_l2 = 0, bias_l1 = 0, bias_l2 = 0   !! regularizers
  contains
    procedure :: configure => dense_configure
    procedure :: acts_on_last_axis => dense_last_axis
    procedure :: options => dense_options
    procedure :: forward_r32 => dense_forward_r32
    procedure :: forward_r64 => dense_forward_r64
    procedure :: absorbs_activation => dense_absorbs_activation
    procedure :: forward_act_r32 => dense_forward_act_r32
    procedure :: forward_act_r64 => dense_forward_act_r64
    procedure :: supports_training => dense_supports_training
    procedure :: penalty => dense_penalty
    procedure :: cache_size => dense_cache_size
    procedure :: train_forward_r32 => dense_train_forward_r32
    procedure :: train_forward_r64 => dense_train_forward_r64
    procedure :: backward_r32 => dense_backward_r32
    procedure :: backward_r64 => dense_backward_r64
  end type fkb_dense_t

contains

  logical function dense_last_axis(self)
    !! Applied at every position of the leading axes of rank > 1 data (Keras: axis=-1).
    class(fkb_dense_t), intent(in) :: self
    dense_last_axis = .true.
  end function dense_last_axis

  subroutine dense_configure(self, cfg, stat, msg)
    class(fkb_dense_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    call cfg%get_int('units', self%n_out, stat, msg)
    if (stat /= FKB_OK) return
    if (self%n_out < 1 .or. self%n_out > BLAS_INT_MAX) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': units must be in 1..' // &
                     int_text(BLAS_INT_MAX) // ', got ' // int_text(self%n_out))
      return
    end if
    call read_activation(cfg, self%act, stat, msg)
    if (stat /= FKB_OK) return
    call cfg%get_bool('use_bias', self%use_bias, stat, msg, default=.true.)
    if (stat == FKB_OK) call cfg%get_real('kernel_l1', self%kernel_l1, stat, msg, default=0.0_real64)
    if (stat == FKB_OK) call cfg%get_real('kernel_l2', self%kernel_l2, stat, msg, default=0.0_real64)
    if (stat == FKB_OK) call cfg%get_real('bias_l1', self%bias_l1, stat, msg, default=0.0_real64)
    if (stat == FKB_OK) call cfg%get_real('bias_l2', self%bias_l2, stat, msg, default=0.0_real64)
    if (stat /= FKB_OK) return
    if (self%use_bias) then
      call self%declare_params([character(len=6) :: 'kernel', 'bias'], &
                               reshape([self%n_in, self%n_out, self%n_out, -1_int64], [2, 2]))
    else
      call self%declare_params(['kernel'], reshape([self%n_in, self%n_out], [2, 1]))
    end if
  end subroutine dense_configure

  subroutine dense_options(self, cfg)
    class(fkb_dense_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('units', int_text(self%n_out))
    call write_activation(self%act, cfg)
    call cfg%set('use_bias', merge('1', '0', self%use_bias))
    if (self%kernel_l1 /= 0) call cfg%set('kernel_l1', real_text(self%kernel_l1))
    if (self%kernel_l2 /= 0) call cfg%set('kernel_l2', real_text(self%kernel_l2))
    if (self%bias_l1 /= 0) call cfg%set('bias_l1', real_text(self%bias_l1))
    if (self%bias_l2 /= 0) call cfg%set('bias_l2', real_text(self%bias_l2))
  end subroutine dense_options

  subroutine dense_penalty(self, k, l1, l2)
    class(fkb_dense_t), intent(in) :: self
    integer, intent(in) :: k
    real(real64), intent(out) :: l1, l2
    if (k == 1) then
      l1 = self%kernel_l1
      l2 = self%kernel_l2
    else
      l1 = self%bias_l1
      l2 = self%bias_l2
    end if
  end subroutine dense_penalty

  logical function dense_absorbs_activation(self)
    !! A linear Dense followed by an Activation layer runs as one Dense with that activation.
    class(fkb_dense_t), intent(in) :: self
    dense_absorbs_activation = self%act%id == ACT_LINEAR
  end function dense_absorbs_activation

  subroutine dense_forward_r32(self, x, y)
    class(fkb_dense_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    call self%forward_act_r32(x, y, self%act)
  end subroutine dense_forward_r32

  subroutine dense_forward_act_r32(self, x, y, act)
    class(fkb_dense_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    type(fkb_activation_t), intent(in) :: act
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (self%use_bias) then
      call affine(act, self%n_out, n, self%n_in, self%params(1)%r32, x, y, self%params(2)%r32)
    else
      call affine(act, self%n_out, n, self%n_in, self%params(1)%r32, x, y)
    end if
  end subroutine dense_forward_act_r32

  subroutine dense_forward_r64(self, x, y)
    class(fkb_dense_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    call self%forward_act_r64(x, y, self%act)
  end subroutine dense_forward_r64

  subroutine dense_forward_act_r64(self, x, y, act)
    class(fkb_dense_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    type(fkb_activation_t), intent(in) :: act
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (self%use_bias) then
      call affine(act, self%n_out, n, self%n_in, self%params(1)%r64, x, y, self%params(2)%r64)
    else
      call affine(act, self%n_out, n, self%n_in, self%params(1)%r64, x, y)
    end if
  end subroutine dense_forward_act_r64

  logical function dense_supports_training(self)
    class(fkb_dense_t), intent(in) :: self
    dense_supports_training = .true.
  end function dense_supports_training

  integer(int64) function dense_cache_size(self)
    !! z = W x + b for the activation's derivative; a linear Dense needs none (y is z).
    class(fkb_dense_t), intent(in) :: self
    dense_cache_size = merge(0_int64, self%n_out, self%act%id == ACT_LINEAR)
  end function dense_cache_size

  subroutine dense_train_forward_r32(self, x, y, cache, key)
    ! z = W x + b kept in the cache (unless linear: y is z), y = act(z).
    class(fkb_dense_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (self%act%id == ACT_LINEAR) then
      call linear_forward(self, n, x, y)
    else
      call linear_forward(self, n, x, cache)
      y = cache
      call apply_activation(self%act, self%n_out, n, y)
    end if
  end subroutine dense_train_forward_r32

  subroutine dense_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_dense_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (.not. dz_given .and. self%act%id /= ACT_LINEAR) &
      call activation_backward(self%act, self%n_out, n, cache, y, dy)
    ! dW (n_out, n_in) = dz . x^T: the layout of the kernel tensor (Keras (n_in, units), C order)
    call gemm_nt(self%n_out, self%n_in, n, dy, x, grads(1)%r32, 0.0_real32)
    if (self%use_bias) call column_sum(self%n_out, n, dy, grads(2)%r32)
    if (need_dx) call gemm_tn(self%n_in, n, self%n_out, self%params(1)%r32, dy, dx)
  end subroutine dense_backward_r32

  subroutine dense_train_forward_r64(self, x, y, cache, key)
    ! z = W x + b kept in the cache (unless linear: y is z), y = act(z).
    class(fkb_dense_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (self%act%id == ACT_LINEAR) then
      call linear_forward(self, n, x, y)
    else
      call linear_forward(self, n, x, cache)
      y = cache
      call apply_activation(self%act, self%n_out, n, y)
    end if
  end subroutine dense_train_forward_r64

  subroutine dense_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_dense_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: n
    n = size(x, 2, kind=int64)
    if (.not. dz_given .and. self%act%id /= ACT_LINEAR) &
      call activation_backward(self%act, self%n_out, n, cache, y, dy)
    ! dW (n_out, n_in) = dz . x^T: the layout of the kernel tensor (Keras (n_in, units), C order)
    call gemm_nt(self%n_out, self%n_in, n, dy, x, grads(1)%r64, 0.0_real64)
    if (self%use_bias) call column_sum(self%n_out, n, dy, grads(2)%r64)
    if (need_dx) call gemm_tn(self%n_in, n, self%n_out, self%params(1)%r64, dy, dx)
  end subroutine dense_backward_r64

  subroutine linear_forward_r32(self, n, x, z)
    ! z = W x + b, the bias added in registers where FKB's kernels run.
    class(fkb_dense_t), intent(in) :: self
    integer(int64), intent(in) :: n
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: z(:, :)
    type(fkb_activation_t) :: linear
    if (self%use_bias) then
      if (.not. fused_gemm(self%n_out, n, self%n_in, self%params(1)%r32, x, z, FUSED_NONE, &
                           0.0_real64, .true., self%params(2)%r32)) then
        call gemm(self%n_out, n, self%n_in, self%params(1)%r32, x, z)
        call bias_activation(linear, self%n_out, n, z, self%params(2)%r32)
      end if
    else
      call gemm(self%n_out, n, self%n_in, self%params(1)%r32, x, z)
    end if
  end subroutine linear_forward_r32

  subroutine linear_forward_r64(self, n, x, z)
    ! z = W x + b, the bias added in registers where FKB's kernels run.
    class(fkb_dense_t), intent(in) :: self
    integer(int64), intent(in) :: n
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: z(:, :)
    type(fkb_activation_t) :: linear
    if (self%use_bias) then
      if (.not. fused_gemm(self%n_out, n, self%n_in, self%params(1)%r64, x, z, FUSED_NONE, &
                           0.0_real64, .true., self%params(2)%r64)) then
        call gemm(self%n_out, n, self%n_in, self%params(1)%r64, x, z)
        call bias_activation(linear, self%n_out, n, z, self%params(2)%r64)
      end if
    else
      call gemm(self%n_out, n, self%n_in, self%params(1)%r64, x, z)
    end if
  end subroutine linear_forward_r64

  ! The bias gradient, sum(dy, dim=2) in the same order, column by column (gfortran's sum
  ! over dim 2 strides across the rows).
  pure subroutine column_sum_r32(m, n, dy, db)
    integer(int64), intent(in) :: m, n
    real(real32), intent(in) :: dy(m, n)
    real(real32), intent(out) :: db(m)
    integer(int64) :: j
    db = 0
    do j = 1, n
      db = db + dy(:, j)
    end do
  end subroutine column_sum_r32

  pure subroutine column_sum_r64(m, n, dy, db)
    integer(int64), intent(in) :: m, n
    real(real64), intent(in) :: dy(m, n)
    real(real64), intent(out) :: db(m)
    integer(int64) :: j
    db = 0
    do j = 1, n
      db = db + dy(:, j)
    end do
  end subroutine column_sum_r64

end module fkb_layer_dense
