!! Layers that only apply an activation: Keras `Activation`, `ReLU`, `LeakyReLU`, `ELU` and
!! `Softmax`. They differ only in how their options name the activation's parameters.
module fkb_layer_activation
  use iso_fortran_env, only: real32, real64, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_INTERNAL, set_error
  use fkb_config, only: fkb_config_t, real_text
  use fkb_layer, only: fkb_layer_t
  use fkb_tensor, only: fkb_tensor_t
  use omp_lib, only: omp_in_parallel, omp_get_max_threads
  use fkb_activation, only: fkb_activation_t, read_activation, write_activation, &
                            apply_activation, activation_backward, ACT_RELU_GENERAL, ACT_LEAKY_RELU, ACT_ELU, &
                            ACT_SOFTMAX, derivative_from_output
  implicit none
  private
  public :: fkb_activation_layer_t

  type, extends(fkb_layer_t) :: fkb_activation_layer_t
    type(fkb_activation_t) :: act
  contains
    procedure :: configure => act_configure
    procedure :: acts_on_last_axis => act_last_axis
    procedure :: options => act_options
    procedure :: forward_r32 => act_forward_r32
    procedure :: activation_only => act_activation_only
    procedure :: forward_r64 => act_forward_r64
    procedure :: supports_training => act_supports_training
    procedure :: backward_r32 => act_backward_r32
    procedure :: backward_r64 => act_backward_r64
    procedure :: runs_in_place => act_runs_in_place
    procedure :: backward_from_output_r32 => act_backward_from_output_r32
    procedure :: backward_from_output_r64 => act_backward_from_output_r64
    generic :: backward_from_output => backward_from_output_r32, backward_from_output_r64
  end type fkb_activation_layer_t

contains

  logical function act_last_axis(self)
    !! Applied at every position of the leading axes of rank > 1 data (Keras: axis=-1).
    class(fkb_activation_layer_t), intent(in) :: self
    act_last_axis = .true.
  end function act_last_axis

  subroutine act_configure(self, cfg, stat, msg)
    class(fkb_activation_layer_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: text
    self%n_out = self%n_in
    stat = FKB_OK
    select case (self%type_name)
    case ('activation')
      call read_activation(cfg, self%act, stat, msg)
    case ('relu')
      ! keras.layers.ReLU(max_value=None, negative_slope=0, threshold=0)
      self%act%id = ACT_RELU_GENERAL
      call cfg%get_real('negative_slope', self%act%alpha, stat, msg, default=0.0_real64)
      if (stat == FKB_OK) call cfg%get_real('threshold', self%act%threshold, stat, msg, &
                                            default=0.0_real64)
      if (stat == FKB_OK) call cfg%get_text('max_value', text, stat, msg, default='none')
      if (stat == FKB_OK .and. text /= 'none') then
        self%act%has_max = .true.
        call cfg%get_real('max_value', self%act%max_value, stat, msg)
      end if
    case ('leaky_relu')
      self%act%id = ACT_LEAKY_RELU
      call cfg%get_real('negative_slope', self%act%alpha, stat, msg, default=0.3_real64)
    case ('elu')
      self%act%id = ACT_ELU
      call cfg%get_real('alpha', self%act%alpha, stat, msg, default=1.0_real64)
    case ('softmax')
      self%act%id = ACT_SOFTMAX
    case default
      call set_error(stat, msg, FKB_ERR_INTERNAL, 'activation layer of unknown type ' // &
                     self%type_name)
    end select
  end subroutine act_configure

  subroutine act_options(self, cfg)
    class(fkb_activation_layer_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    select case (self%type_name)
    case ('activation')
      call write_activation(self%act, cfg)
    case ('relu')
      if (self%act%has_max) then
        call cfg%set('max_value', real_text(self%act%max_value))
      else
        call cfg%set('max_value', 'none')
      end if
      call cfg%set('negative_slope', real_text(self%act%alpha))
      call cfg%set('threshold', real_text(self%act%threshold))
    case ('leaky_relu')
      call cfg%set('negative_slope', real_text(self%act%alpha))
    case ('elu')
      call cfg%set('alpha', real_text(self%act%alpha))
    end select
  end subroutine act_options

  logical function act_activation_only(self, act)
    class(fkb_activation_layer_t), intent(in) :: self
    type(fkb_activation_t), intent(out) :: act
    act = self%act
    act_activation_only = .true.
  end function act_activation_only

  subroutine act_forward_r32(self, x, y)
    class(fkb_activation_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64) :: m, n, t, nt, j0, j1
    m = self%n_out
    n = size(y, 2, kind=int64)
    nt = share_count(m * n)
    if (nt > 1) then
      !$omp parallel do schedule(static) private(j0, j1) num_threads(nt)
      do t = 0, nt - 1
        j0 = n * t / nt + 1
        j1 = n * (t + 1) / nt
        y(:, j0:j1) = x(:, j0:j1)
        call apply_activation(self%act, m, j1 - j0 + 1, y(:, j0:j1))
      end do
      !$omp end parallel do
    else
      y = x
      call apply_activation(self%act, m, n, y)
    end if
  end subroutine act_forward_r32

  subroutine act_forward_r64(self, x, y)
    class(fkb_activation_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64) :: m, n, t, nt, j0, j1
    m = self%n_out
    n = size(y, 2, kind=int64)
    nt = share_count(m * n)
    if (nt > 1) then
      !$omp parallel do schedule(static) private(j0, j1) num_threads(nt)
      do t = 0, nt - 1
        j0 = n * t / nt + 1
        j1 = n * (t + 1) / nt
        y(:, j0:j1) = x(:, j0:j1)
        call apply_activation(self%act, m, j1 - j0 + 1, y(:, j0:j1))
      end do
      !$omp end parallel do
    else
      y = x
      call apply_activation(self%act, m, n, y)
    end if
  end subroutine act_forward_r64

  logical function act_supports_training(self)
    class(fkb_activation_layer_t), intent(in) :: self
    act_supports_training = .true.
  end function act_supports_training

  subroutine act_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_activation_layer_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: m, n, t, nt, j0, j1
    if (.not. need_dx) return
    m = self%n_out
    n = size(x, 2, kind=int64)
    nt = share_count(m * n)
    if (nt > 1) then
      !$omp parallel do schedule(static) private(j0, j1) num_threads(nt)
      do t = 0, nt - 1
        j0 = n * t / nt + 1
        j1 = n * (t + 1) / nt
        if (.not. dz_given) call activation_backward(self%act, m, j1 - j0 + 1, x(:, j0:j1), &
                                                     y(:, j0:j1), dy(:, j0:j1))
        dx(:, j0:j1) = dy(:, j0:j1)
      end do
      !$omp end parallel do
    else
      if (.not. dz_given) call activation_backward(self%act, m, n, x, y, dy)
      dx = dy
    end if
  end subroutine act_backward_r32

  subroutine act_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_activation_layer_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: m, n, t, nt, j0, j1
    if (.not. need_dx) return
    m = self%n_out
    n = size(x, 2, kind=int64)
    nt = share_count(m * n)
    if (nt > 1) then
      !$omp parallel do schedule(static) private(j0, j1) num_threads(nt)
      do t = 0, nt - 1
        j0 = n * t / nt + 1
        j1 = n * (t + 1) / nt
        if (.not. dz_given) call activation_backward(self%act, m, j1 - j0 + 1, x(:, j0:j1), &
                                                     y(:, j0:j1), dy(:, j0:j1))
        dx(:, j0:j1) = dy(:, j0:j1)
      end do
      !$omp end parallel do
    else
      if (.not. dz_given) call activation_backward(self%act, m, n, x, y, dy)
      dx = dy
    end if
  end subroutine act_backward_r64

  logical function act_runs_in_place(self)
    !! Whether training may run this layer in place: its output computed by the producer of
    !! its input (a Dense that absorbs it), its input's gradient by backward_from_output, in
    !! the buffer of its output's.
    class(fkb_activation_layer_t), intent(in) :: self
    act_runs_in_place = derivative_from_output(self%act)
  end function act_runs_in_place

  subroutine act_backward_from_output_r32(self, y, dy)
    !! dy := dL/dx from the output alone (only where runs_in_place): one pass, no input read.
    integer, parameter :: wp = real32
    include 'kernels/activation_from_output.inc'
  end subroutine act_backward_from_output_r32

  subroutine act_backward_from_output_r64(self, y, dy)
    integer, parameter :: wp = real64
    include 'kernels/activation_from_output.inc'
  end subroutine act_backward_from_output_r64

  integer(int64) function share_count(elements) result(nt)
    !! Threads to split a pass over this many elements across the batch: all of them from
    !! 2^16 elements (tens of us of work, more than waking a thread), else 1; 1 inside a
    !! parallel region (the executor may already split the batch).
    integer(int64), intent(in) :: elements
    nt = 1
    if (elements < 2_int64**16) return
    if (omp_in_parallel()) return
    nt = max(1, omp_get_max_threads())
  end function share_count

end module fkb_layer_activation
